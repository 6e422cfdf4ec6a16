"""nova's compute RPC on the wire: the oslo.messaging 2.0 envelope, the request context, call
replies and failures, and version checks. The request context itself (agent.context) lives
below the control plane that makes it; this module flattens it into a message and reads it
back. Pure functions on dicts and bytes; no I/O.

A message body is ``{"oslo.version": "2.0", "oslo.message": "<JSON string>"}``. The inner
message of a request carries ``method``, ``args``, ``version`` ("6.0"), ``_unique_id``, the
context flattened as ``_context_<key>`` and, for a call, ``_msg_id``, ``_reply_q`` and
``_timeout``. A reply's inner message is ``{"result", "failure", "ending", "_msg_id"}`` where
``failure`` is null or a JSON string ``{class, module, message, tb, args, kwargs}``, as
oslo.messaging's ``serialize_remote_exception`` writes it.

Every refusal of a received message raises `BadMessage` (not JSON, not the envelope, fields
missing or of the wrong type) or `UnsupportedVersion`; their text is the one-line reason.
"""

from __future__ import annotations

import json
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from agent.context import RequestContext
from agent.log import new_request_id

ENVELOPE_VERSION = "2.0"
ENVELOPE_VERSION_KEY = "oslo.version"
ENVELOPE_MESSAGE_KEY = "oslo.message"
CONTEXT_PREFIX = "_context_"
# The compute RPC API version this agent serves (nova's ComputeAPI 6.x, whose methods used here
# all exist since 6.0).
SERVER_VERSION = (6, 0)


class BadMessage(ValueError):
    """A received message that cannot be read as a request or reply; str() is the reason."""


class UnsupportedVersion(ValueError):
    """A request for another major version, or a minor above the one served."""


class NoSuchMethod(ValueError):
    """A request for a method this server does not have."""


def context_to_wire(context: RequestContext) -> dict[str, Any]:
    """The ``_context_*`` keys of a message for `context` (nova's names: request_id,
    global_request_id, user_id/user, project_id/tenant, roles, is_admin, and every `extra` key
    as received)."""
    flat = {f"{CONTEXT_PREFIX}{key}": value for key, value in context.extra.items()}
    flat.update({
        f"{CONTEXT_PREFIX}request_id": context.request_id,
        f"{CONTEXT_PREFIX}global_request_id": context.global_request_id,
        f"{CONTEXT_PREFIX}user_id": context.user_id,
        f"{CONTEXT_PREFIX}user": context.user_id,
        f"{CONTEXT_PREFIX}project_id": context.project_id,
        f"{CONTEXT_PREFIX}tenant": context.project_id,
        f"{CONTEXT_PREFIX}roles": list(context.roles),
        f"{CONTEXT_PREFIX}is_admin": context.is_admin,
    })
    return flat


_CONTEXT_FIELDS = {"request_id", "global_request_id", "user_id", "user", "project_id", "tenant",
                   "roles", "is_admin"}


def context_from_wire(message: Mapping[str, Any]) -> RequestContext:
    """The context of a message, from its ``_context_*`` keys; `BadMessage` when one has the
    wrong type. A message without a request id gets a new one (as oslo.context does for a
    context without one)."""
    ctx = {key[len(CONTEXT_PREFIX):]: value for key, value in message.items()
           if key.startswith(CONTEXT_PREFIX)}
    roles = ctx.get("roles") or ()
    if isinstance(roles, str) or not isinstance(roles, (list, tuple)):
        raise BadMessage("_context_roles is not a list")
    return RequestContext(
        request_id=_text_or_none(ctx.get("request_id"), "request_id") or new_request_id(),
        global_request_id=_text_or_none(ctx.get("global_request_id"), "global_request_id"),
        user_id=_text_or_none(ctx.get("user_id", ctx.get("user")), "user_id"),
        project_id=_text_or_none(ctx.get("project_id", ctx.get("tenant")), "project_id"),
        roles=tuple(str(role) for role in roles),
        is_admin=bool(ctx.get("is_admin", False)),
        extra={key: value for key, value in ctx.items() if key not in _CONTEXT_FIELDS})


@dataclass(frozen=True)
class Request:
    """One decoded request. `msg_id`/`reply_q` are set for a call, None for a cast."""

    method: str
    args: Mapping[str, Any]
    version: str
    context: RequestContext
    unique_id: str | None = None
    msg_id: str | None = None
    reply_q: str | None = None
    timeout: float | None = None
    namespace: str | None = None

    @property
    def is_call(self) -> bool:
        return self.msg_id is not None and self.reply_q is not None


def _text_or_none(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadMessage(f"_context_{name} is not a string")


def wrap(message: Mapping[str, Any]) -> bytes:
    """The 2.0 envelope around `message`, as the body's bytes (UTF-8 JSON)."""
    inner = json.dumps(message, default=_json_default)
    return json.dumps({ENVELOPE_VERSION_KEY: ENVELOPE_VERSION,
                       ENVELOPE_MESSAGE_KEY: inner}).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)  # datetimes and uuids as nova's jsonutils.to_primitive writes them


def unwrap(body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The inner message of a body; `BadMessage` naming what is wrong otherwise. kombu hands
    over bytes (or an already decoded dict for application/json)."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage("body is not UTF-8") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            raise BadMessage("body is not JSON") from None
    if not isinstance(body, Mapping):
        raise BadMessage("body is not a JSON object")
    if ENVELOPE_VERSION_KEY not in body or ENVELOPE_MESSAGE_KEY not in body:
        raise BadMessage("body is not an oslo 2.0 envelope (no oslo.version/oslo.message)")
    if body[ENVELOPE_VERSION_KEY] != ENVELOPE_VERSION:
        raise BadMessage(f"envelope version {str(body[ENVELOPE_VERSION_KEY])[:20]!r}, "
                         f"expected {ENVELOPE_VERSION!r}")
    inner = body[ENVELOPE_MESSAGE_KEY]
    if not isinstance(inner, str):
        raise BadMessage("oslo.message is not a JSON string")
    try:
        message = json.loads(inner)
    except ValueError:
        raise BadMessage("oslo.message is not JSON") from None
    if not isinstance(message, dict):
        raise BadMessage("oslo.message is not a JSON object")
    return message


def encode_request(context: RequestContext, method: str, version: str,
                   args: Mapping[str, Any], *, msg_id: str | None = None,
                   reply_q: str | None = None, timeout: float | None = None) -> bytes:
    """A request body as nova's ComputeAPI sends it: a cast without `msg_id`, a call with
    `msg_id`, `reply_q` and `timeout` (seconds)."""
    message: dict[str, Any] = {"method": method, "args": dict(args), "version": version,
                               "_unique_id": uuid.uuid4().hex}
    message.update(context_to_wire(context))
    if msg_id is not None:
        message.update({"_msg_id": msg_id, "_reply_q": reply_q, "_timeout": timeout})
    return wrap(message)


def decode_request(body: bytes | str | Mapping[str, Any]) -> Request:
    """A received request; `BadMessage` with the reason when it is not one."""
    message = unwrap(body)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise BadMessage("no method name")
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise BadMessage(f"{method}: args is not a JSON object")
    version = message.get("version", "1.0")
    if not isinstance(version, str):
        raise BadMessage(f"{method}: version is not a string")
    msg_id, reply_q = message.get("_msg_id"), message.get("_reply_q")
    if (msg_id is None) != (reply_q is None):
        raise BadMessage(f"{method}: a call needs both _msg_id and _reply_q")
    for name, value in (("_msg_id", msg_id), ("_reply_q", reply_q)):
        if value is not None and not isinstance(value, str):
            raise BadMessage(f"{method}: {name} is not a string")
    timeout = message.get("_timeout")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float))):
        raise BadMessage(f"{method}: _timeout is not a number")
    return Request(method=method, args=args, version=version,
                   context=context_from_wire(message),
                   unique_id=message.get("_unique_id"), msg_id=msg_id, reply_q=reply_q,
                   timeout=timeout, namespace=message.get("namespace"))


def parse_version(text: str) -> tuple[int, int]:
    """'6.2' -> (6, 2); `UnsupportedVersion` for anything else."""
    major, dot, minor = text.partition(".")
    if not (major.isdigit() and (not dot or minor.isdigit())):
        raise UnsupportedVersion(f"version {text[:20]!r} is not MAJOR.MINOR")
    return int(major), int(minor or 0)


def check_version(requested: str, served: tuple[int, int] = SERVER_VERSION) -> None:
    """Accept the same major with a minor up to the served one (oslo.messaging's
    ``version_is_compatible``); `UnsupportedVersion` naming both otherwise."""
    major, minor = parse_version(requested)
    if major != served[0] or minor > served[1]:
        raise UnsupportedVersion(f"endpoint does not support RPC version {requested}; "
                                 f"served: {served[0]}.{served[1]}")


def failure_of(exc: BaseException, *, with_traceback: bool = True) -> str:
    """The ``failure`` string of a reply for `exc`: JSON ``{class, module, message, tb, args,
    kwargs}``."""
    kind = type(exc)
    tb = (traceback.format_exception(kind, exc, exc.__traceback__) if with_traceback else [])
    return json.dumps({"class": kind.__name__, "module": kind.__module__,
                       "message": str(exc), "tb": tb,
                       "args": [str(arg) for arg in exc.args], "kwargs": {}})


def encode_reply(msg_id: str, result: Any = None, failure: str | None = None) -> bytes:
    """A call's reply body (one message, ``ending`` true)."""
    return wrap({"result": result, "failure": failure, "ending": True, "_msg_id": msg_id})


@dataclass(frozen=True)
class Reply:
    msg_id: str | None
    result: Any
    failure: Mapping[str, Any] | None
    ending: bool


def decode_reply(body: bytes | str | Mapping[str, Any]) -> Reply:
    """A received reply; `BadMessage` when it is not one."""
    message = unwrap(body)
    failure = message.get("failure")
    if failure is not None:
        try:
            failure = json.loads(failure) if isinstance(failure, str) else failure
        except ValueError:
            raise BadMessage("failure is not JSON") from None
        if not isinstance(failure, dict):
            raise BadMessage("failure is not a JSON object")
    return Reply(msg_id=message.get("_msg_id"), result=message.get("result"),
                 failure=failure, ending=bool(message.get("ending", True)))
