"""An RPC operation saves its outcome and closes its `compute_<method>` event (and a failure's
fault) in one transaction: whoever reads the row after an operation (`agent server events`, an
API client, an agent restarted right after) never sees the outcome without its event result."""

from __future__ import annotations

import pytest
from sqlalchemy import event, update

from agent import vocabulary as s
from agent.compute.operations import InstanceOperations
from agent.context import RequestContext
from agent.db import action_queries as actions
from agent.db.models import Instance
from fakevirt.scenario import DomainSpec, InstanceSeed
from tests.functional.compute_helpers import (HOST, instance_row, make_conf, make_driver,
                                              make_scenario, noop_firewall, seeded)

U = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
def stopping(tmp_path, sqlite_db):
    """A running instance whose stop the API has asked for (task_state, action recorded)."""
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE, task_state=None)],
        [DomainSpec(U, U)]))
    ctx = RequestContext.new(user_id="alice", project_id="p1")
    with sqlite_db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == U)
                        .values(task_state=s.POWERING_OFF))
        actions.start_action(session, instance_uuid=U, action="stop",
                             request_id=ctx.request_id)
    driver = make_driver(make_conf(tmp_path, sqlite_db), scenario)
    return InstanceOperations(sqlite_db, driver, noop_firewall(), HOST), ctx


def _state(db, request_id):
    with db.sessions() as session:
        action = actions.get_action(session, U, request_id)
    row = instance_row(db, U)
    return row.task_state, [(e.event, e.result) for e in action.events]


def test_every_commit_that_shows_the_outcome_shows_the_event_result(sqlite_db, stopping):
    ops, ctx = stopping
    seen = []
    # After each commit of the operation, what another reader would see at that moment.
    event.listen(sqlite_db.sessions, "after_commit",
                 lambda _session: seen.append(_state(sqlite_db, ctx.request_id)))
    ops.stop_instance(ctx, {"uuid": U})
    assert seen[-1] == (None, [("compute_stop_instance", "Success")])
    for task_state, events in seen:
        if task_state is None:  # the outcome is visible: so is the event's result
            assert events == [("compute_stop_instance", "Success")], seen


def test_outcome_is_not_saved_when_its_event_cannot_be(sqlite_db, stopping, monkeypatch):
    """A failure closing the event rolls the outcome back: the message is not acknowledged and
    its redelivery finds the task still in flight."""
    ops, ctx = stopping

    def fail(*_args, **_kwargs):
        raise RuntimeError("injected: the event cannot be written")

    # The event is written whole with the outcome (one statement), or closed with it when
    # it was opened before the driver worked.
    monkeypatch.setattr(actions, "record_event", fail)
    monkeypatch.setattr(actions, "close_event", fail)
    with pytest.raises(RuntimeError, match="injected"):
        ops.stop_instance(ctx, {"uuid": U})
    assert instance_row(sqlite_db, U).task_state == s.POWERING_OFF
