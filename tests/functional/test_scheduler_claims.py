"""The scheduler claims at scheduling time (nova's placement allocations): creates in quick
succession, before the host's next audit, cannot both take the room of one; the audit counting
the same instances counts nothing twice; two creates at once are serialised on the node's lock
row. Real databases (every backend), the control plane's own create_server."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select, text, update

from agent import vocabulary as states
from agent.control.errors import NoValidHost
from agent.control.flavors import create_flavor
from agent.control.servers import create_server
from agent.db.models import ComputeNode, Instance
from agent.heartbeat import Heartbeat
from tests.agent_process import DEADLINE, wait_for
from tests.functional.compute_helpers import in_transaction, make_host, make_scenario
from tests.functional.test_services_cli import add_service, set_service
from tests.rabbit import unique_host

# A node with room for one instance of each flavor below, in one dimension only.
NODE = {"vcpus": 8, "memory_mb": 8192, "local_gb": 100, "cpu_allocation_ratio": 1.0,
        "ram_allocation_ratio": 1.0, "disk_allocation_ratio": 1.0,
        "reserved_host_cpus": 0, "reserved_host_memory_mb": 512, "reserved_host_disk_mb": 0,
        # as audited with no instance yet
        "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0, "free_ram_mb": 7680,
        "free_disk_gb": 100}
FLAVORS = {"RamFilter": {"vcpus": 1, "memory_mb": 4096, "root_gb": 1},
           "CoreFilter": {"vcpus": 5, "memory_mb": 512, "root_gb": 1},
           "DiskFilter": {"vcpus": 1, "memory_mb": 512, "root_gb": 60}}


def add_node(db, **changes):
    host = unique_host("claim")
    service_id = add_service(db, host)
    with db.sessions.begin() as session:
        session.add(ComputeNode(host=host, hypervisor_hostname=host, service_id=service_id,
                                **{**NODE, **changes}))
    return host


def create(db, name, flavor, host=None):
    """One create in a transaction of its own: the host it was given, or the NoValidHost."""
    outcome = in_transaction(db, create_server, name, flavor, service_down_time=60, host=host)
    return outcome.no_valid_host or outcome.server.host


def flavor(db, name, **sizes):
    in_transaction(db, create_flavor, name, **sizes)


@pytest.mark.parametrize("filter_name", sorted(FLAVORS))
def test_creates_before_the_audit_take_the_room_of_one_once(any_db, filter_name):
    host = add_node(any_db)
    flavor(any_db, "f", **FLAVORS[filter_name])
    results = [create(any_db, f"vm{i}", "f") for i in range(3)]
    assert results[0] == host
    for refused in results[1:]:
        assert isinstance(refused, NoValidHost)
        assert [f[2] for f in refused.failures] == [filter_name], str(refused)
        assert f"{host} ({host}): {filter_name}:" in str(refused)
    with any_db.sessions() as session:
        rows = session.execute(select(Instance.host, Instance.vm_state)
                               .order_by(Instance.id)).all()
    assert [tuple(r) for r in rows] == [(host, states.BUILDING), (None, states.ERROR),
                                        (None, states.ERROR)]


def test_a_deleted_instance_gives_its_room_back(any_db):
    host = add_node(any_db)
    flavor(any_db, "f", **FLAVORS["RamFilter"])
    assert create(any_db, "vm0", "f") == host
    assert isinstance(create(any_db, "vm1", "f"), NoValidHost)
    with any_db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.display_name == "vm0")
                        .values(vm_state=states.DELETED, deleted=Instance.id))
    assert create(any_db, "vm2", "f") == host


def test_the_audit_counting_the_new_instance_counts_it_once(tmp_path, any_db):
    """The real resource tracker audits after the first create: its usage counts the building
    instance; the scheduler, adding claims to the reserve (not to the audited usage), still
    sees exactly the room left."""
    scenario = make_scenario()  # 16 vCPUs, 32768 MiB, 500 GiB
    compute = make_host(tmp_path, any_db, scenario, reserved_host_memory_mb=512)
    compute.start()
    try:
        host = compute.host
        set_service(any_db, compute.service.id, disabled=False, disabled_reason=None)
        assert Heartbeat(any_db, compute.service.id, 10).beat()
        flavor(any_db, "half", vcpus=1, memory_mb=16384)
        flavor(any_db, "rest", vcpus=1, memory_mb=32768 - 512 - 16384)
        flavor(any_db, "rest+1", vcpus=1, memory_mb=32768 - 512 - 16384 + 1)
        assert create(any_db, "a", "half", host) == host
        report = compute.update_available_resource().nodes[0]
        assert report.values["memory_mb_used"] == 512 + 16384  # the audit counts it
        refused = create(any_db, "b", "rest+1", host)
        assert isinstance(refused, NoValidHost) and "RamFilter" in str(refused)
        assert create(any_db, "c", "rest", host) == host
    finally:
        compute.stop()


# Whether a session of this test's database is waiting for a lock (the second create).
LOCK_WAITS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND wait_event_type = 'Lock'",
    # the second's statement that waits (its insert, for the first's gap lock on the host's
    # index range, or its node lock): they return at once unless they wait
    "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
             "AND id != CONNECTION_ID() AND (info LIKE '%FOR UPDATE%' "
             "OR info LIKE 'INSERT INTO instances%')",
}


def test_two_creates_at_once_one_takes_the_room(any_db):
    """The first create holds its transaction open; the second reads the node while the first
    is uncommitted (it fits) and waits for a lock held by the first: the node's lock row
    (PostgreSQL, MariaDB: SELECT ... FOR UPDATE; on MariaDB its insert may already wait for the
    first's gap lock on the host's index range), or the one writer (SQLite). Once the first
    commits, the second finds the room taken."""
    host = add_node(any_db)
    flavor(any_db, "f", **FLAVORS["RamFilter"])
    dialect = any_db.engine.dialect.name
    waiting = threading.Event()
    second: dict = {}

    def about_to_wait(conn, cursor, statement, params, context, executemany):
        # SQLite: the second's first write waits in SQLite's busy handler, out of sight
        if (threading.current_thread().name == "second" and dialect == "sqlite"
                and statement.lstrip().upper().startswith("INSERT INTO INSTANCES")):
            waiting.set()

    def second_waits() -> bool:
        if dialect == "sqlite":
            return waiting.is_set()
        with any_db.engine.connect() as conn:
            return conn.execute(text(LOCK_WAITS[dialect])).scalar() > 0

    def run_second():
        second["result"] = create(any_db, "vm-b", "f")

    event.listen(any_db.engine, "before_cursor_execute", about_to_wait)
    try:
        with any_db.sessions.begin() as session:
            first = create_server(session, "vm-a", "f", service_down_time=60)
            thread = threading.Thread(target=run_second, name="second", daemon=True)
            thread.start()
            assert wait_for(second_waits), "the second create never waited for the first"
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        event.remove(any_db.engine, "before_cursor_execute", about_to_wait)
    assert first.server.host == host and first.no_valid_host is None
    assert isinstance(second["result"], NoValidHost), second
    assert "RamFilter: 4096 MiB RAM requested" in str(second["result"])
    with any_db.sessions() as session:
        placed = session.scalars(select(Instance.display_name)
                                 .where(Instance.host == host)).all()
    assert placed == ["vm-a"]
