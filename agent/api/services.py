"""os-services: list with host/binary filters, the actions by URL before 2.53 (enable, disable,
disable-log-reason, force-down), PUT /os-services/{uuid} from 2.53, and delete.

The rules are agent.control.services' (one implementation for `agent services` and this API);
this module maps its refusals to nova's codes and messages. `state` and the down reason come
from agent.liveness, as in `agent services list`. Each entry carries, besides nova's fields, the
agent's own `last_seen_up`, `clock_offset_seconds` and `down_reason` (clients ignore them).
"""

from __future__ import annotations

import uuid as uuidlib

from agent.api.context import Call, bool_field, string_field
from agent.api.faults import ApiError
from agent.control import errors as e
from agent.control import services as control
from agent.db import service_queries as q
from agent.liveness import Liveness, clock_offset
from agent.vocabulary import COMPUTE_BINARY, MAX_REASON_LENGTH, canonical_binary, service_zone

ID_AS_UUID = (2, 53)
FORCED_DOWN = (2, 11)
OLD_ACTIONS = ("enable", "disable", "disable-log-reason", "force-down")


def entries(call: Call, rows, db_now) -> list[dict]:
    """Each service row as nova's list shows it at the call's version, with the agent's extras,
    in the rows' order. One Liveness judges every row at `db_now` (the database's clock read
    with them); the down reason is worded only for the rows that are down."""
    if not rows:
        return []
    liveness = Liveness(db_now, call.service_down_time)
    is_up, state_of = liveness.is_up, liveness.state_of
    as_uuid = call.version.at_least(*ID_AS_UUID)
    with_forced = call.version.at_least(*FORCED_DOWN)
    server_clock = call.server_clock
    result = []
    for row in rows:
        last_seen_up, updated_at = row.last_seen_up, row.updated_at
        up = is_up(row.forced_down, last_seen_up, row.created_at)
        offset = clock_offset(last_seen_up, row.last_seen_host_time) if server_clock else None
        entry = {
            "id": row.uuid if as_uuid else row.id, "binary": row.binary, "host": row.host,
            "zone": service_zone(row.binary), "status": "disabled" if row.disabled else "enabled",
            "state": "up" if up else "down",
            "updated_at": (updated_at.isoformat("T", "microseconds")
                           if updated_at is not None else None),
            "disabled_reason": row.disabled_reason, "forced_down": row.forced_down,
            "last_seen_up": (last_seen_up.isoformat("T", "microseconds")
                             if last_seen_up is not None else None),
            "down_reason": None if up else state_of(row).reason,
            "clock_offset_seconds": round(offset, 3) if offset is not None else None,
        }
        if not with_forced:
            del entry["forced_down"]
        result.append(entry)
    return result


def list_services(call: Call) -> tuple[int, dict]:
    host = call.query_text("host")
    binary = call.query_text("binary")
    db_now, rows = q.list_services(call.session, host,
                                   canonical_binary(binary) if binary is not None else None)
    return 200, {"services": entries(call, rows, db_now)}


def refusal(exc: e.ControlError) -> ApiError:
    """nova's code and message for a control-plane refusal."""
    if isinstance(exc, e.ServiceNotFound):
        return ApiError(404, f"Host '{exc.host}' with binary '{exc.binary}' not found.")
    if isinstance(exc, (e.ReasonTooLong, e.ReasonReserved)):
        return ApiError(400, f"Invalid input for field/attribute disabled_reason: {exc}")
    if isinstance(exc, e.EvacuationsPending):
        return ApiError(400, f"Service {exc.host} cannot be forced up while {exc.count} "
                             "evacuation(s) from it are in status 'done': start its compute "
                             "service so that it cleans up the evacuated instances first.")
    if isinstance(exc, e.ServiceInUse):
        if exc.instances:
            return ApiError(409, "Unable to delete compute service that is hosting "
                                 "instances. Migrate or delete the instances first.")
        return ApiError(409, "Unable to delete compute service that has in-progress "
                             "migrations. Complete the migrations or delete the instances "
                             "first.")
    return ApiError(400, str(exc))


def _check_compute(binary: str) -> None:
    if canonical_binary(binary) != COMPUTE_BINARY:
        raise ApiError(400, f"Updating a {binary} service is not supported. Only "
                            f"{COMPUTE_BINARY} (nova-compute) services can be updated.")


def update_by_action(call: Call, action: str) -> tuple[int, dict]:
    """PUT /os-services/{enable|disable|disable-log-reason|force-down} (below 2.53)."""
    forced = action == "force-down"
    if action not in OLD_ACTIONS or (forced and not call.version.at_least(*FORCED_DOWN)):
        raise ApiError(404, "Unknown action")
    allowed = ["host", "binary"] + (["disabled_reason"] if action == "disable-log-reason"
                                    else ["forced_down"] if forced else [])
    body = call.object_body(*allowed, required=tuple(allowed))
    host, binary = string_field(body, "host"), string_field(body, "binary")
    _check_compute(binary)
    result = {"host": host, "binary": binary}
    try:
        if forced:
            _, after = control.set_forced_down(call.session, host, binary,
                                               bool_field(body, "forced_down"))
            result["forced_down"] = after.forced_down
        else:
            reason = (string_field(body, "disabled_reason", max_length=MAX_REASON_LENGTH)
                      if action == "disable-log-reason" else None)
            _, after = control.set_disabled(call.session, host, binary, action != "enable",
                                            reason)
            result["status"] = "disabled" if after.disabled else "enabled"
            if reason is not None:
                result["disabled_reason"] = after.disabled_reason
    except e.ControlError as exc:
        raise refusal(exc) from None
    return 200, {"service": result}


def update_by_id(call: Call, service_id: str) -> tuple[int, dict]:
    """PUT /os-services/{uuid} (2.53 and later): status, disabled_reason, forced_down."""
    if not call.version.at_least(*ID_AS_UUID):
        return update_by_action(call, service_id)
    row = _load(call, service_id)
    body = call.object_body("status", "disabled_reason", "forced_down")
    if not body:
        raise ApiError(400, "No updates were requested. Fields 'status' or 'forced_down' "
                            "should be specified.")
    status = body.get("status")
    if "status" in body and status not in ("enabled", "disabled"):
        raise ApiError(400, f"Invalid input for field/attribute status. Value: {status!r}. "
                            f"{status!r} is not one of ['enabled', 'disabled']")
    reason = None
    if "disabled_reason" in body:
        reason = string_field(body, "disabled_reason", max_length=MAX_REASON_LENGTH)
        if status != "disabled":
            raise ApiError(400, "Specifying 'disabled_reason' with status 'enabled' is "
                                "invalid." if status == "enabled" else
                                "'disabled_reason' is only accepted with status 'disabled'.")
    forced = bool_field(body, "forced_down") if "forced_down" in body else None
    _check_compute(row.binary)
    try:
        if status is not None:
            control.set_disabled(call.session, row.host, row.binary, status == "disabled",
                                 reason)
        if forced is not None:
            control.set_forced_down(call.session, row.host, row.binary, forced)
    except e.ControlError as exc:
        raise refusal(exc) from None
    db_now, rows = q.list_services(call.session, row.host, row.binary)
    return 200, {"service": entries(call, rows, db_now)[0]}


def delete(call: Call, service_id: str) -> tuple[int, None]:
    """DELETE /os-services/{id}: an integer id below 2.53, a uuid from 2.53; 204."""
    row = _load(call, service_id)
    try:
        control.delete_service(call.session, row.host, row.binary)
    except e.ControlError as exc:
        raise refusal(exc) from None
    return 204, None


def _load(call: Call, service_id: str):
    if call.version.at_least(*ID_AS_UUID):
        if not is_uuid(service_id):
            raise ApiError(400, f"Invalid uuid {service_id}")
        row = q.load_service_by_uuid(call.session, service_id)
    else:
        if not service_id.isascii() or not service_id.isdigit() or len(service_id) > 18:
            raise ApiError(400, f"Invalid ID {service_id}: an integer is expected (service "
                                "ids are uuids from microversion 2.53)")
        row = q.load_service_by_id(call.session, int(service_id))
    if row is None:
        raise ApiError(404, f"Service {service_id} not found.")
    return row


def is_uuid(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return len(text.replace("-", "")) == 32


ROUTES = (
    ("GET", r"/os-services", list_services),
    ("PUT", r"/os-services/(?P<service_id>[^/]+)", update_by_id),
    ("DELETE", r"/os-services/(?P<service_id>[^/]+)", delete),
)
