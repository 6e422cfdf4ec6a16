"""The request context: who asked for a piece of work and under which request ids, as nova's
``RequestContext`` carries it between services. Below every layer that passes one on: the
control plane makes it, the RPC wire format (agent.rpc.wire) flattens it into a message and
reads it back, the compute host's operations receive it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from agent.log import caller_request_id, new_request_id


@dataclass(frozen=True)
class RequestContext:
    """The caller's context, as nova's ``RequestContext.to_dict`` sends it.

    `request_id` is the caller's ``req-<uuid>`` (the compute side never makes a new one);
    `global_request_id` the one the first service of a chain was given, or None. `extra` keeps
    every other context key (auth_token, service catalog, ...) as received, so a context
    sent on is the one that came in; it is never logged."""

    request_id: str
    global_request_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    roles: tuple[str, ...] = ()
    is_admin: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def new(cls, **values: Any) -> "RequestContext":
        """A context for a request that starts here: a fresh ``req-<uuid>``."""
        values.setdefault("request_id", new_request_id())
        return cls(**values)

    def log_prefix(self) -> str:
        """nova's logging_context_format_string fields: '<global> <request> <user> <project>'
        with '-' for a missing one (`agent.log.caller_request_id`)."""
        return caller_request_id(self.request_id, self.global_request_id, self.user_id,
                                 self.project_id)

