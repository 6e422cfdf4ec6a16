"""The SQL work of each RPC operation, counted and held flat: a stop, start, pause, unpause or
terminate is the re-read and ONE write transaction of two statements (the outcome's guarded
UPDATE, the whole event's INSERT ... SELECT); a build, reboot or rebuild also saves its working
task_state with its event opened before the driver works (two statements, one more commit). The
counts do not depend on how many instances the host has, on any backend."""

from __future__ import annotations

import uuid as uuid_lib

import pytest
from sqlalchemy import event, update

from agent import vocabulary as s
from agent.compute.operations import InstanceOperations
from agent.context import RequestContext
from agent.db import action_queries as actions
from agent.db.models import Instance
from agent.virt.types import PowerState as P
from fakevirt.scenario import InstanceSeed
from tests.functional.compute_helpers import (HOST, domain, instance_row, make_conf,
                                              make_driver, make_scenario, noop_firewall,
                                              seeded)
from tests.functional.statement_counter import count_statements

U = "44444444-4444-4444-8444-444444444444"

# method, extra arguments, row (vm_state, task_state), guest (None: none), statements, commits
CASES = [
    ("build_and_run_instance", {"image": {"id": "img-1"}}, (s.BUILDING, s.SCHEDULING), None,
     5, 2),
    ("stop_instance", {}, (s.ACTIVE, s.POWERING_OFF), P.RUNNING, 3, 1),
    ("start_instance", {}, (s.STOPPED, s.POWERING_ON), P.SHUTDOWN, 3, 1),
    ("reboot_instance", {"reboot_type": "SOFT"}, (s.ACTIVE, s.REBOOTING), P.RUNNING, 5, 2),
    ("pause_instance", {}, (s.ACTIVE, s.PAUSING), P.RUNNING, 3, 1),
    ("unpause_instance", {}, (s.PAUSED, s.UNPAUSING), P.PAUSED, 3, 1),
    ("terminate_instance", {}, (s.ACTIVE, s.DELETING), P.RUNNING, 3, 1),
    ("rebuild_instance", {"image_ref": "img-2"}, (s.ACTIVE, s.REBUILDING), P.RUNNING, 5, 2),
]


def _run(tmp_path, db, method, kwargs, row, guest, others: int):
    """Seed the instance (and `others` on the same host), record the API's action, run the
    operation; (statements, commits, the row after, the event's result)."""
    vm_state, task_state = row
    seeds = [InstanceSeed(U, host=HOST, node=HOST, vm_state=vm_state)]
    seeds += [InstanceSeed(str(uuid_lib.uuid5(uuid_lib.NAMESPACE_URL, f"other/{i}")),
                           host=HOST, node=HOST) for i in range(others)]
    scenario = seeded(db, make_scenario(seeds, [domain(U, guest)] if guest is not None else []))
    ctx = RequestContext.new()
    with db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == U)
                        .values(task_state=task_state))
        actions.start_action(session, instance_uuid=U, action=method, request_id=ctx.request_id)
    ops = InstanceOperations(db, make_driver(make_conf(tmp_path, db), scenario),
                             noop_firewall(), HOST)
    commits = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(db.engine, "commit", listener)
    try:
        with count_statements(db.engine) as counter:
            try:
                getattr(ops, method)(ctx, {"uuid": U}, **kwargs)
            except Exception:  # noqa: BLE001 - a failure is re-raised once saved
                pass
    finally:
        event.remove(db.engine, "commit", listener)
    with db.sessions() as session:
        events = actions.get_action(session, U, ctx.request_id).events
    return counter.statements, len(commits), instance_row(db, U), [e.result for e in events]


@pytest.mark.parametrize("method, kwargs, row, guest, statements, commits", CASES,
                         ids=[c[0] for c in CASES])
def test_operation_statements_and_commits_are_fixed(tmp_path, any_db, method, kwargs, row,
                                                    guest, statements, commits):
    counted = _run(tmp_path, any_db, method, kwargs, row, guest, others=0)
    assert counted[:2] == (statements, commits)
    assert counted[2].task_state is None and counted[3] == ["Success"]


@pytest.mark.parametrize("method, kwargs, row, guest, statements, commits",
                         [c for c in CASES if c[0] in ("stop_instance", "reboot_instance")],
                         ids=["stop_instance", "reboot_instance"])
def test_operation_statements_do_not_grow_with_the_instances_of_the_host(
        tmp_path, sqlite_db, method, kwargs, row, guest, statements, commits):
    counted = _run(tmp_path, sqlite_db, method, kwargs, row, guest, others=300)
    assert counted[:2] == (statements, commits)


def test_failed_operation_adds_only_its_fault_and_the_actions_error(tmp_path, sqlite_db):
    """A stop of a guest the hypervisor does not have: the outcome (task reverted), the fault,
    the event with its error and the action marked 'Error', in the one write transaction."""
    counted = _run(tmp_path, sqlite_db, "stop_instance", {}, (s.ACTIVE, s.POWERING_OFF), None,
                   others=0)  # no guest: the driver cannot stop it
    assert counted[:2] == (5, 1)
    assert counted[2].task_state is None and counted[3] == ["Error"]
