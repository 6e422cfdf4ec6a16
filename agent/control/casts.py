"""What the control plane asks a compute host to do: a `Cast` built inside a request's
transaction and sent with `send` once it committed (the host re-reads the row and must find
what was saved), through any `Caster` (agent.rpc.client.RpcClient, or a recorder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from agent.context import RequestContext

RPC_VERSION = "6.0"  # the compute RPC version nova sends these methods with


class Caster(Protocol):
    def cast(self, host: str, method: str, version: str, context: RequestContext,
             **args: Any) -> None: ...


@dataclass(frozen=True)
class Cast:
    host: str
    method: str
    context: RequestContext
    args: Mapping[str, Any] = field(default_factory=dict)


def send(caster: Caster, casts: "Cast | None | list[Cast] | tuple[Cast, ...]") -> None:
    """Send each cast in order (None: nothing to send)."""
    if casts is None:
        return
    for c in ([casts] if isinstance(casts, Cast) else casts):
        caster.cast(c.host, c.method, RPC_VERSION, c.context, **c.args)


def instance_object(data: Mapping[str, Any]) -> dict[str, Any]:
    """The `instance` argument of a cast: nova's serialised Instance around `data` (at least
    its uuid)."""
    return {"nova_object.name": "Instance", "nova_object.namespace": "nova",
            "nova_object.version": "2.8", "nova_object.data": dict(data)}
