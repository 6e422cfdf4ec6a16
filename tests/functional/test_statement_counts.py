"""init_host and the resource audit send the same number of SQL statements at 10 and at 1,000
instances: one read per kind of row, one batched write per kind of change."""

from __future__ import annotations

import pytest

from agent.compute.host import ComputeHost
from agent.db.engine import make_database
from agent.network.firewall import NoopFirewall
from agent.registry import register_service
from fakevirt.driver import FakeDriver
from fakevirt.seed import seed_database
from tests.functional.compute_helpers import make_conf
from tests.functional.statement_counter import count_statements, mixed_scenario


def measure(tmp_path, db, n):
    host_name = f"count-{n}"
    scenario = mixed_scenario(n, host_name)
    seed_database(db, scenario)
    conf = make_conf(tmp_path / host_name, db).replace(host=host_name)
    service = register_service(db, host_name)
    driver = FakeDriver(conf, scenario=scenario)
    host = ComputeHost(conf, db, service, driver=driver, firewall=NoopFirewall())
    driver.init_host(host_name)
    host.tracker.check_node_identity()
    try:
        with count_statements(db.engine) as init:
            result = host.manager.init_host()
        with count_statements(db.engine) as first_audit:
            host.tracker.update_available_resource(startup=True)
        with count_statements(db.engine) as audit:
            host.tracker.update_available_resource()
    finally:
        host.stop()
    actions = {o.action for o in result.instances} | {e.action for e in result.evacuated}
    return init, first_audit, audit, actions


def check_flat(tmp_path, db):
    small = measure(tmp_path, db, 10)
    large = measure(tmp_path, db, 1000)
    # Same kinds of work at both sizes, so the comparison means something.
    assert small[3] == large[3]
    assert {"evacuated-destroyed", "cleared-task", "deleted", "powered-off", "none"} <= small[3]
    for name, a, b in zip(("init_host", "first audit", "audit"), small[:3], large[:3]):
        assert a.statements == b.statements, f"{name}: {a.statements} vs {b.statements}"
    # The writes were batched: at 1,000 instances some 400 rows change in a handful of
    # statements.
    assert large[0].rows >= 300 and large[0].statements <= 10
    return small


def test_statement_counts_flat_on_sqlite(tmp_path, sqlite_db):
    init, first_audit, audit, _ = check_flat(tmp_path, sqlite_db)
    assert audit.statements <= 3  # three reads, nothing to save


@pytest.mark.postgresql
def test_statement_counts_flat_on_postgresql(tmp_path, postgresql_url):
    db = make_database(postgresql_url)
    try:
        check_flat(tmp_path, db)
    finally:
        db.dispose()
