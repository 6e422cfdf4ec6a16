"""Which endpoint method a request runs, decided before anything runs (oslo.messaging's
RPCDispatcher rules): the method must exist on the endpoint, the requested version must be the
served major with a minor up to the served one, and the arguments must bind to the method's
parameters (nothing required missing, nothing unknown). A refusal raises `NoSuchMethod`,
`UnsupportedVersion` or `MissingArgument`, whose text is the reason: a call's failure reply, a
cast's one log line."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from agent.context import RequestContext
from agent.rpc import wire


class MissingArgument(TypeError):
    """The request's args do not fit the method: a required one missing, or one unknown."""


@dataclass(frozen=True)
class Bound:
    """A request ready to run: `func(context, **args)`."""

    method: str
    func: Callable[..., Any]
    args: Mapping[str, Any]

    def run(self, context: RequestContext) -> Any:
        return self.func(context, **self.args)


class Dispatcher:
    """Routes requests to the public methods named in `methods` of `endpoint`. Each method
    takes the `RequestContext` first, then the request's args by name."""

    def __init__(self, endpoint: object, methods: tuple[str, ...],
                 version: tuple[int, int] = wire.SERVER_VERSION):
        self._methods = {name: getattr(endpoint, name) for name in methods}
        self._signatures = {name: inspect.signature(func)
                            for name, func in self._methods.items()}
        self.version = version

    def bind(self, request: wire.Request) -> Bound:
        func = self._methods.get(request.method)
        if func is None:
            raise wire.NoSuchMethod(f"Endpoint does not support RPC method {request.method}")
        wire.check_version(request.version, self.version)
        try:
            self._signatures[request.method].bind(request.context, **request.args)
        except TypeError as exc:
            raise MissingArgument(f"{request.method}: {exc}") from None
        return Bound(request.method, func, request.args)
