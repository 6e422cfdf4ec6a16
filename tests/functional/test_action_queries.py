"""Instance actions, events and faults on every backend: what `server event list/show` and a
failed build's fault will read."""

from __future__ import annotations

from agent.db import action_queries as aq


def test_action_with_events_reads_back_in_order(db):
    with db.sessions.begin() as s:
        aid = aq.start_action(s, instance_uuid="i-1", action="stop", request_id="req-1",
                              user_id="u", project_id="p")
    with db.sessions.begin() as s:
        eid = aq.start_event(s, instance_uuid="i-1", request_id="req-1",
                             event="compute_stop_instance", host="compute-1")
    with db.sessions.begin() as s:
        aq.finish_event(s, eid, result=aq.EVENT_SUCCESS)
        aq.finish_action(s, aid)
    with db.sessions() as s:
        action = aq.get_action(s, "i-1", "req-1")
        listed = aq.list_actions(s, "i-1")
    assert (action.action, action.request_id, action.user_id, action.project_id) == (
        "stop", "req-1", "u", "p")
    assert action.start_time is not None and action.finish_time is not None
    assert action.message is None
    assert [(e.event, e.result, e.host, e.traceback) for e in action.events] == [
        ("compute_stop_instance", "Success", "compute-1", None)]
    assert action.events[0].finish_time >= action.events[0].start_time
    assert [a.request_id for a in listed] == ["req-1"] and listed[0].events == ()


def test_failed_event_marks_its_action_error(db):
    with db.sessions.begin() as s:
        aq.start_action(s, instance_uuid="i-1", action="create", request_id="req-2")
        eid = aq.start_event(s, instance_uuid="i-1", request_id="req-2",
                             event="compute_build_and_run_instance", host="h")
        aq.finish_event(s, eid, result=aq.EVENT_ERROR, traceback="Traceback ...\nBoom")
    with db.sessions() as s:
        action = aq.get_action(s, "i-1", "req-2")
    assert action.message == "Error"
    assert action.events[0].result == "Error" and "Boom" in action.events[0].traceback


def test_event_without_an_action_is_not_recorded(db):
    """A message from a caller that records no action (nova's own API) still runs: no event."""
    with db.sessions.begin() as s:
        assert aq.start_event(s, instance_uuid="i-9", request_id="req-x", event="e",
                              host="h") is None
    with db.sessions() as s:
        assert aq.get_action(s, "i-9", "req-x") is None and aq.list_actions(s, "i-9") == []


def test_newest_fault_is_the_one_shown_and_messages_fit_the_column(db):
    with db.sessions.begin() as s:
        aq.add_fault(s, instance_uuid="i-1", code=500, message="first", host="h")
        aq.add_fault(s, instance_uuid="i-1", code=500, message="x" * 400, details="tb")
    with db.sessions() as s:
        fault = aq.latest_fault(s, "i-1")
        assert aq.latest_fault(s, "i-2") is None
    assert fault.code == 500 and fault.details == "tb"
    assert len(fault.message) == 255 and fault.message.endswith("...")


def test_every_action_with_its_events_in_two_statements(any_db):
    """`agent server events` and os-instance-actions read an instance's whole history in two
    SELECTs, however many actions it has, each action with its own events in order."""
    from tests.functional.statement_counter import count_statements

    with any_db.sessions.begin() as s:
        for n in range(5):
            aq.start_action(s, instance_uuid="i-9", action=f"a{n}", request_id=f"req-{n}")
            for step in ("first", "second"):
                eid = aq.start_event(s, instance_uuid="i-9", request_id=f"req-{n}",
                                     event=f"{step}-{n}", host="h")
                aq.finish_event(s, eid, result=aq.EVENT_SUCCESS)
        aq.start_action(s, instance_uuid="other", action="x", request_id="req-x")
    with count_statements(any_db.engine) as counter, any_db.sessions() as s:
        listed = aq.list_actions_with_events(s, "i-9")
    assert counter.statements == 2
    assert sorted(a.request_id for a in listed) == [f"req-{n}" for n in range(5)]
    assert all([e.event for e in a.events] == [f"first-{a.action[1:]}", f"second-{a.action[1:]}"]
               for a in listed)
    with any_db.sessions() as s:
        assert listed == [aq.get_action(s, "i-9", a.request_id) for a in listed]
