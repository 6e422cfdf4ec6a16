"""init_host and the resource audit send the same number of SQL statements at 10 and at 1,000
instances: one read per kind of row, one batched write per kind of change."""

from __future__ import annotations

import pytest

from agent.db.engine import make_database
from tests.functional.compute_helpers import make_conf
from tests.functional.statement_counter import count_statements, mixed_scenario, seeded_host


def measure(tmp_path, db, n):
    host_name = f"count-{n}"
    conf = make_conf(tmp_path / host_name, db).replace(host=host_name)
    # A clock that stands still: the ownership re-read after RECHECK_AFTER seconds of driver
    # work would otherwise add a statement whenever a loaded machine is slow.
    host = seeded_host(conf, db, mixed_scenario(n, host_name), clock=lambda: 0.0)
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
    assert large[0].rows >= 300 and large[0].statements <= 11
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
