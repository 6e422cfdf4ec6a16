"""Instance actions and their events (nova's instance_actions / instance_actions_events), and
instance faults: the record of "what happened to my instance, and which request did it".

The control plane starts an action with the request id it returns to the user
(`start_action`); the service that performs it adds one event per step (`start_event`, then
`finish_event` with 'Success' or 'Error' and the traceback), found by (instance uuid, request
id) as nova's action_event_start does. Every function takes the caller's session and runs one or
two statements; the caller owns the transaction.

The compute operations write their event with the statements below, built once, each finding
the action by (instance uuid, request id) itself: `record_event` writes a whole event (start,
finish, result) in ONE statement, in the transaction that saves the operation's outcome;
`open_event` and `close_event` write one that must be seen while a long driver call runs (a
build, a reboot, a rebuild: opened with the task_state saved before the driver works).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from sqlalchemy import String, Text, bindparam, insert, literal, select, update
from sqlalchemy.orm import Session

from agent.db.models import (InstanceAction, InstanceActionEvent, InstanceFault, Timestamp,
                             utcnow)

_A = InstanceAction.__table__
_E = InstanceActionEvent.__table__
_F = InstanceFault.__table__

EVENT_SUCCESS = "Success"  # nova's instance_actions_events.result values
EVENT_ERROR = "Error"
MAX_MESSAGE = 255  # instance_actions.message, instance_faults.message are String(255)


@dataclass(frozen=True)
class ActionEventRecord:
    id: int
    event: str | None
    start_time: dt.datetime | None
    finish_time: dt.datetime | None
    result: str | None
    traceback: str | None
    host: str | None


@dataclass(frozen=True)
class ActionRecord:
    id: int
    action: str | None
    instance_uuid: str | None
    request_id: str | None
    user_id: str | None
    project_id: str | None
    start_time: dt.datetime | None
    finish_time: dt.datetime | None
    message: str | None
    events: tuple[ActionEventRecord, ...] = ()


@dataclass(frozen=True)
class FaultRecord:
    instance_uuid: str
    code: int
    message: str | None
    details: str | None
    host: str | None
    created_at: dt.datetime | None


_ACTION_COLUMNS = [getattr(_A.c, f) for f in ActionRecord.__dataclass_fields__ if f != "events"]
_EVENT_COLUMNS = [getattr(_E.c, f) for f in ActionEventRecord.__dataclass_fields__]


def start_action(session: Session, *, instance_uuid: str, action: str, request_id: str,
                 user_id: str | None = None, project_id: str | None = None) -> int:
    """Record that `action` (nova's names: 'create', 'stop', 'start', 'reboot', 'pause',
    'unpause', 'delete', 'evacuate') began on the instance for `request_id`, at the database
    clock. Returns the action's id."""
    result = session.execute(insert(_A).values(
        action=action, instance_uuid=instance_uuid, request_id=request_id, user_id=user_id,
        project_id=project_id, start_time=utcnow()))
    return int(result.inserted_primary_key[0])


def finish_action(session: Session, action_id: int, message: str | None = None) -> None:
    """Set the action's finish_time (and its message: nova writes 'Error' when it failed)."""
    session.execute(update(_A).where(_A.c.id == action_id).values(
        finish_time=utcnow(), message=_cut(message), updated_at=utcnow()))


def find_action_id(session: Session, instance_uuid: str, request_id: str) -> int | None:
    """The newest live action of the instance with this request id, or None."""
    return session.execute(
        select(_A.c.id).where(_A.c.instance_uuid == instance_uuid,
                              _A.c.request_id == request_id, _A.c.deleted == 0)
        .order_by(_A.c.id.desc()).limit(1)).scalar()


def start_event(session: Session, *, instance_uuid: str, request_id: str, event: str,
                host: str | None) -> int | None:
    """Add event `event` (e.g. 'compute_stop_instance') to the action of (instance, request id).
    Returns the event's id, or None when no such action exists (a message sent by a caller that
    records no actions, such as nova's own API: the operation still runs)."""
    action_id = find_action_id(session, instance_uuid, request_id)
    if action_id is None:
        return None
    result = session.execute(insert(_E).values(action_id=action_id, event=event, host=host,
                                               start_time=utcnow()))
    return int(result.inserted_primary_key[0])


def finish_event(session: Session, event_id: int, *, result: str,
                 traceback: str | None = None) -> None:
    """Close an event with `result` (EVENT_SUCCESS or EVENT_ERROR) and a failure's traceback.
    An error also marks its action's message 'Error', as nova does."""
    session.execute(update(_E).where(_E.c.id == event_id).values(
        finish_time=utcnow(), result=result, traceback=traceback, updated_at=utcnow()))
    if result == EVENT_ERROR:
        action_id = select(_E.c.action_id).where(_E.c.id == event_id).scalar_subquery()
        session.execute(update(_A).where(_A.c.id == action_id).values(
            message="Error", updated_at=utcnow()))


# The newest live action of (instance, request id): what an event is added to.
_ACTION_OF = (select(_A.c.id).where(_A.c.instance_uuid == bindparam("a_uuid"),
                                    _A.c.request_id == bindparam("a_request_id"),
                                    _A.c.deleted == 0)
              .order_by(_A.c.id.desc()).limit(1))
_EVENT_INSERT_COLUMNS = ["action_id", "event", "host", "start_time", "finish_time", "result",
                         "traceback", "deleted"]
_OPEN_EVENT = insert(_E).from_select(_EVENT_INSERT_COLUMNS, _ACTION_OF.with_only_columns(
    _A.c.id, bindparam("e_event", type_=String), bindparam("e_host", type_=String), utcnow(),
    literal(None, Timestamp), literal(None, String), literal(None, Text), literal(0)))
_RECORD_EVENT = insert(_E).from_select(_EVENT_INSERT_COLUMNS, _ACTION_OF.with_only_columns(
    _A.c.id, bindparam("e_event", type_=String), bindparam("e_host", type_=String),
    bindparam("e_start", type_=Timestamp), utcnow(), bindparam("e_result", type_=String),
    bindparam("e_traceback", type_=Text), literal(0)))
_CLOSE_EVENT = (update(_E).where(_E.c.action_id == _ACTION_OF.scalar_subquery(),
                                 _E.c.event == bindparam("e_event"), _E.c.finish_time.is_(None),
                                 _E.c.deleted == 0)
                .values(finish_time=utcnow(), result=bindparam("e_result"),
                        traceback=bindparam("e_traceback"), updated_at=utcnow()))
# nova marks an action 'Error' when one of its events fails (a request id names one action of
# an instance: every live one with it is marked).
_ACTION_ERROR = (update(_A).where(_A.c.instance_uuid == bindparam("a_uuid"),
                                  _A.c.request_id == bindparam("a_request_id"),
                                  _A.c.deleted == 0)
                 .values(message="Error", updated_at=utcnow()))


def record_event(session: Session, *, instance_uuid: str, request_id: str, event: str,
                 host: str | None, start_time: dt.datetime, result: str,
                 traceback: str | None = None) -> bool:
    """Add a finished event to the action of (instance, request id) in one statement (INSERT
    ... SELECT): started at `start_time` (read from the database's clock), finished now, with
    `result` and a failure's traceback; an error also marks the action 'Error'. False when no
    such action exists (a sender that records none, such as nova's own API): nothing written."""
    params = {"a_uuid": instance_uuid, "a_request_id": request_id, "e_event": event,
              "e_host": host, "e_start": start_time, "e_result": result,
              "e_traceback": traceback}
    added = session.execute(_RECORD_EVENT, params).rowcount == 1
    if added and result == EVENT_ERROR:
        session.execute(_ACTION_ERROR, params)
    return added


def open_event(session: Session, *, instance_uuid: str, request_id: str, event: str,
               host: str | None) -> bool:
    """Add an event started now and not finished to the action of (instance, request id), in
    one statement; False when no such action exists (nothing written)."""
    return session.execute(_OPEN_EVENT, {"a_uuid": instance_uuid, "a_request_id": request_id,
                                         "e_event": event, "e_host": host}).rowcount == 1


def close_event(session: Session, *, instance_uuid: str, request_id: str, event: str,
                result: str, traceback: str | None = None) -> None:
    """Finish the open `event` of the action of (instance, request id) with `result` and a
    failure's traceback (one statement; an error marks the action 'Error' with a second)."""
    params = {"a_uuid": instance_uuid, "a_request_id": request_id, "e_event": event,
              "e_result": result, "e_traceback": traceback}
    session.execute(_CLOSE_EVENT, params)
    if result == EVENT_ERROR:
        session.execute(_ACTION_ERROR, params)


def list_actions(session: Session, instance_uuid: str) -> list[ActionRecord]:
    """The instance's live actions, newest first (without events, as nova's list)."""
    rows = session.execute(select(*_ACTION_COLUMNS)
                           .where(_A.c.instance_uuid == instance_uuid, _A.c.deleted == 0)
                           .order_by(_A.c.start_time.desc(), _A.c.id.desc()))
    return [ActionRecord(*row) for row in rows]


def list_actions_with_events(session: Session, instance_uuid: str) -> list[ActionRecord]:
    """The instance's live actions, newest first, each with its events in order: two SELECTs
    however many actions there are."""
    listed = list_actions(session, instance_uuid)
    if not listed:
        return []
    events: dict[int, list[ActionEventRecord]] = {a.id: [] for a in listed}
    rows = session.execute(select(_E.c.action_id, *_EVENT_COLUMNS)
                           .where(_E.c.action_id.in_(list(events)), _E.c.deleted == 0)
                           .order_by(_E.c.id))
    for action_id, *event in rows:
        events[action_id].append(ActionEventRecord(*event))
    return [replace(a, events=tuple(events[a.id])) for a in listed]


def get_action(session: Session, instance_uuid: str, request_id: str) -> ActionRecord | None:
    """One action of the instance by request id, with its events in order; None if unknown."""
    row = session.execute(select(*_ACTION_COLUMNS)
                          .where(_A.c.instance_uuid == instance_uuid,
                                 _A.c.request_id == request_id, _A.c.deleted == 0)
                          .order_by(_A.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    events = session.execute(select(*_EVENT_COLUMNS)
                             .where(_E.c.action_id == row.id, _E.c.deleted == 0)
                             .order_by(_E.c.id))
    return ActionRecord(*row, events=tuple(ActionEventRecord(*e) for e in events))


def add_fault(session: Session, *, instance_uuid: str, code: int, message: str,
              details: str | None = None, host: str | None = None) -> None:
    """Record why the instance failed (nova's instance_faults: code 500 for an unexpected
    error, the exception's message, its traceback as details)."""
    session.execute(insert(_F).values(instance_uuid=instance_uuid, code=code,
                                      message=_cut(message), details=details, host=host))


def latest_fault(session: Session, instance_uuid: str) -> FaultRecord | None:
    """The instance's newest fault (what `server show` prints as 'fault'), or None."""
    row = session.execute(select(_F.c.instance_uuid, _F.c.code, _F.c.message, _F.c.details,
                                 _F.c.host, _F.c.created_at)
                          .where(_F.c.instance_uuid == instance_uuid, _F.c.deleted == 0)
                          .order_by(_F.c.id.desc()).limit(1)).first()
    return FaultRecord(*row) if row is not None else None


def _cut(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_MESSAGE:
        return message
    return message[:MAX_MESSAGE - 3] + "..."
