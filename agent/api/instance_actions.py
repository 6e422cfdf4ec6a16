"""os-instance-actions: `GET /servers/{id}/os-instance-actions` (newest first) and
`GET /servers/{id}/os-instance-actions/{request_id}` with its events (nova's shapes up to
2.53: times without a zone, microseconds; events with their traceback, as for an
administrator). Read through agent.control.servers.server_actions (deleted servers too, as
nova reads them)."""

from __future__ import annotations

import datetime as dt

from agent.api.context import Call
from agent.api.faults import ApiError
from agent.control import errors as e
from agent.control import servers as control
from agent.db.action_queries import ActionRecord


def _time(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def _action(record: ActionRecord) -> dict:
    return {"action": record.action, "instance_uuid": record.instance_uuid,
            "request_id": record.request_id, "user_id": record.user_id,
            "project_id": record.project_id, "start_time": _time(record.start_time),
            "message": record.message}


def _actions(call: Call, server_id: str) -> list[ActionRecord]:
    try:
        server, records = control.server_actions(call.session, server_id)
    except (e.InstanceNotFound, e.AmbiguousName):
        server = None
    if server is None or server.uuid != server_id:
        raise ApiError(404, f"Instance {server_id} could not be found.")
    return records


def list_actions(call: Call, server_id: str) -> tuple[int, dict]:
    records = _actions(call, server_id)
    return 200, {"instanceActions": [_action(r) for r in reversed(records)]}


def show(call: Call, server_id: str, request_id: str) -> tuple[int, dict]:
    """One action by the request id that did it, with its events in order; 404 with nova's
    message when the server has no such action."""
    for record in _actions(call, server_id):
        if record.request_id == request_id:
            events = [{"event": ev.event, "start_time": _time(ev.start_time),
                       "finish_time": _time(ev.finish_time), "result": ev.result,
                       "traceback": ev.traceback} for ev in record.events]
            return 200, {"instanceAction": {**_action(record), "events": events}}
    raise ApiError(404, f"Action for request_id {request_id[:60]} on instance {server_id} "
                        "not found")


ROUTES = (
    ("GET", r"/servers/(?P<server_id>[^/]+)/os-instance-actions", list_actions),
    ("GET", r"/servers/(?P<server_id>[^/]+)/os-instance-actions/(?P<request_id>[^/]+)", show),
)
