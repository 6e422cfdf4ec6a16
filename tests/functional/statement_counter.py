"""Counting the SQL statements an operation sends (an executemany counts as one), and a
fakevirt host seeded with a mix of start-up cases to count them on (tests and bench_init_host)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid as uuid_lib

from sqlalchemy import event

from agent import vocabulary as s
from fakevirt.scenario import MigrationSeed, Scenario, generate_scenario


@dataclasses.dataclass
class Counter:
    statements: int = 0
    rows: int = 0


@contextlib.contextmanager
def count_statements(engine):
    counter = Counter()

    def before(conn, cursor, statement, parameters, context, executemany):
        counter.statements += 1
        counter.rows += len(parameters) if executemany else 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", before)


def mixed_scenario(n: int, hostname: str) -> Scenario:
    """`n` guests with database records in a fixed mix of start-up cases: 1 in 10 evacuated to
    another host (with a record), 1 in 10 with an abandoned snapshot task, 1 in 10 half
    deleted, 1 in 10 interrupted while powering off, the rest plain."""
    base = generate_scenario(n, hostname=hostname)
    instances, migrations = [], []
    for i, rec in enumerate(base.instances):
        kind = i % 10
        if kind == 9:
            rec = dataclasses.replace(rec, host="dest", node="dest")
            migrations.append(MigrationSeed(
                str(uuid_lib.uuid5(uuid_lib.NAMESPACE_URL, f"{hostname}/evac/{i}")), rec.uuid,
                "evacuation", "done", hostname, "dest", hostname, "dest"))
        elif kind == 1:
            rec = dataclasses.replace(rec, vm_state=s.ACTIVE, task_state=s.IMAGE_UPLOADING)
        elif kind == 2:
            rec = dataclasses.replace(rec, vm_state=s.DELETED)
        elif kind == 3:
            rec = dataclasses.replace(rec, vm_state=s.ACTIVE, task_state=s.POWERING_OFF)
        instances.append(rec)
    return dataclasses.replace(base, instances=tuple(instances), migrations=tuple(migrations))


def seeded_host(conf, db, scenario: Scenario, clock=time.monotonic):
    """A ComputeHost for `scenario` (seeded into `db`, service registered, driver up, node
    identity checked), ready for init_host and audits; the caller stops it. `clock`: the
    manager's monotonic clock (seconds)."""
    from agent.compute.host import ComputeHost
    from agent.network.firewall import NoopFirewall
    from agent.registry import register_service
    from fakevirt.driver import FakeDriver
    from fakevirt.seed import seed_database

    seed_database(db, scenario)
    service = register_service(db, conf.host)
    driver = FakeDriver(conf, scenario=scenario)
    host = ComputeHost(conf, db, service, driver=driver, firewall=NoopFirewall(), clock=clock)
    driver.init_host(conf.host)
    host.tracker.check_node_identity()
    return host
