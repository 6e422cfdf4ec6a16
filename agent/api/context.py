"""What a resource handler is given for one request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy.orm import Session

from agent.api.faults import ApiError
from agent.api.microversion import Version
from agent.values import has_control_characters


@dataclass(frozen=True)
class Call:
    """One request: `version` negotiated, `session` inside the request's one transaction
    (committed when the handler returns, rolled back when it raises), `body` the parsed JSON
    (None without one), `query` the query string (first value of each key),
    `service_down_time` in seconds, `server_clock` False on SQLite (no clock offsets),
    `base_url` the scheme, host and script root (no trailing '/'), for links; `can_cast`
    whether the application holds an RPC client, and `casts` what a handler appends for the
    application to send to compute hosts once the transaction committed."""

    version: Version
    session: Session
    body: Any
    query: Mapping[str, str]
    service_down_time: float
    server_clock: bool
    request_id: str
    global_request_id: str | None = None
    base_url: str = ""  # scheme, host and script root, for links
    can_cast: bool = False
    casts: list = field(default_factory=list)
    # Every value of each query key, in the request's order (nova reads the last one).
    query_lists: Mapping[str, list[str]] = field(default_factory=dict)
    # The request's own collection root: base_url, '/v2.1' and the project segment when the
    # request had one (nova's next links keep it).
    api_root: str = ""
    max_limit: int = 1000  # [api] max_limit

    def query_text(self, key: str) -> str | None:
        """A query-string value; ApiError 400 when it holds control characters (no row can
        match one, and PostgreSQL refuses a NUL in a statement)."""
        value = self.query.get(key)
        if value is not None and has_control_characters(value):
            raise ApiError(400, f"Invalid input for query parameter {key}. Value: "
                                f"{value[:60]!r}. Control characters are not allowed")
        return value

    def object_body(self, *allowed: str, required: tuple[str, ...] = ()) -> dict:
        """The body as a JSON object with only `allowed` keys and every `required` one;
        ApiError 400 (nova's schema refusal) otherwise."""
        return schema_object(self.body, "body", "The request body", allowed, required)


def schema_object(value: object, field: str, shown: str, allowed, required=()) -> dict:
    """`value` as a JSON object with only `allowed` keys and every `required` one (nova's
    schema rules for one object of a body: `field` names it in the refusal, `shown` in its
    sentence); ApiError 400 with nova's text otherwise."""
    if not isinstance(value, dict):
        raise ApiError(400, f"Invalid input for field/attribute {field}. {shown} must be a "
                            "JSON object.")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ApiError(400, "Additional properties are not allowed ("
                            + ", ".join(repr(k) for k in unknown) + " was unexpected)")
    for key in required:
        if key not in value:
            raise ApiError(400, f"'{key}' is a required property")
    return value


def string_field(body: Mapping, key: str, *, max_length: int = 255,
                 min_length: int = 1) -> str:
    """A string member within nova's schema length; ApiError 400 naming the field."""
    value = body[key]
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid input for field/attribute {key}. Value: {value!r}. "
                            f"{value!r} is not of type 'string'")
    if has_control_characters(value):
        raise ApiError(400, f"Invalid input for field/attribute {key}. Value: {value[:60]!r}. "
                            "Control characters are not allowed")
    if not min_length <= len(value) <= max_length:
        raise ApiError(400, f"Invalid input for field/attribute {key}. Value: {value[:60]!r}. "
                            f"Length must be between {min_length} and {max_length} "
                            f"characters ({len(value)} given)")
    return value


def bool_field(body: Mapping, key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise ApiError(400, f"Invalid input for field/attribute {key}. Value: {value!r}. "
                            f"{value!r} is not of type 'boolean'")
    return value
