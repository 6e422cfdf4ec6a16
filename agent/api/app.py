"""The WSGI application: discovery, the optional `/{project_id}` segment after `/v2.1`,
microversion negotiation, request ids, one database transaction per request, nova's fault
bodies, and one access-log line per request.

Every log line of a request carries its `req-<uuid>` (agent.log.request_context); an inbound
`X-OpenStack-Request-ID: req-<uuid>` is kept as the global request id (a malformed one is
ignored, as nova does) and every line of the request carries it too, before the request's own
id (`[req-GLOBAL req-OWN]`, nova's order).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Callable, Iterable

from sqlalchemy.exc import DBAPIError
from werkzeug.wrappers import Request, Response

from agent import log
from agent.api import (aggregates, discovery, flavors, hypervisors, images, instance_actions,
                       microversion, servers, services)
from agent.api.context import Call
from agent.api.faults import ApiError, body as fault_body

LOG = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("agent.api.access")
JSON = "application/json"
GLOBAL_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Every resource module's routes: (method, path pattern after /v2.1[/project], handler).
ROUTES = tuple((method, re.compile(pattern + r"/?$"), handler)
               for module in (services, hypervisors, flavors, aggregates, images, servers,
                              instance_actions)
               for method, pattern, handler in module.ROUTES)
COLLECTIONS = frozenset(pattern.pattern.split("/")[1].split("(")[0].rstrip("$?")
                        for _, pattern, _ in ROUTES)


class ApiApp:
    """nova's compute API over the agent's database. `sessions`: a session factory (one
    transaction per request); `service_down_time` in seconds; `server_clock`: False on SQLite;
    `max_body_bytes`: larger request bodies are refused with 413; `caster`: the RPC client
    (agent.rpc.client.RpcClient, one per process) that server actions cast through after
    their transaction committed (None: server actions answer 503); `max_limit`: the most
    entries one list answer carries (nova's [api] max_limit)."""

    def __init__(self, sessions, *, service_down_time: float, server_clock: bool,
                 max_body_bytes: int = 114688,
                 clock: Callable[[], float] = time.monotonic, caster=None,
                 max_limit: int = 1000):
        self.sessions = sessions
        self.max_limit = max_limit
        self.caster = caster
        self.service_down_time = service_down_time
        self.server_clock = server_clock
        self.max_body_bytes = max_body_bytes
        self.clock = clock

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        request = Request(environ)
        started = self.clock()
        request_id = log.new_request_id()
        inbound = request.headers.get("X-OpenStack-Request-ID", "")
        global_id = inbound if GLOBAL_ID.match(inbound) else None
        # With a global id, every line carries both, global first (nova's order), so that a
        # grep for either finds the request's lines here as in the compute agent's log.
        with log.request_context(f"{global_id} {request_id}" if global_id else request_id):
            if global_id:
                LOG.info("global request id %s", global_id)
            response = self.respond(request, request_id, global_id)
            response.headers["x-openstack-request-id"] = request_id
            response.headers["x-compute-request-id"] = request_id
            ACCESS_LOG.info('%s "%s %s" status %d len %s time %.4f',
                            request.remote_addr or "-", request.method,
                            request.full_path.rstrip("?"), response.status_code,
                            response.content_length or 0, self.clock() - started)
            return response(environ, start_response)

    def respond(self, request: Request, request_id: str, global_id: str | None) -> Response:
        base = request.host_url.rstrip("/") + request.script_root
        path = request.path
        if path in ("", "/"):
            return _json(200, discovery.versions(base))
        if path in ("/v2.1", "/v2.1/"):
            return _json(200, discovery.version(base))
        if not path.startswith("/v2.1/"):
            return _fault(404, "Not found")
        rest = path[len("/v2.1"):]
        parts = rest.strip("/").split("/")
        api_root = base + "/v2.1"
        if parts and parts[0] not in COLLECTIONS:
            rest = "/" + "/".join(parts[1:])  # the optional project id
            if rest == "/":
                return _json(200, discovery.version(base))
            api_root += "/" + parts[0]
        try:
            version = microversion.requested(request.headers)
        except ApiError as exc:
            return _fault(exc.code, exc.message)
        response = self.dispatch(request, rest, version, request_id, global_id, base, api_root)
        for name, value in microversion.response_headers(version):
            response.headers[name] = value
        return response

    def dispatch(self, request: Request, rest: str, version, request_id: str,
                 global_id: str | None, base_url: str, api_root: str = "") -> Response:
        matched = False
        for method, pattern, handler in ROUTES:
            match = pattern.match(rest)
            if match is None:
                continue
            matched = True
            if method == request.method:
                break
        else:
            return _fault(405, "Method not allowed") if matched else _fault(404, "Not found")
        try:
            body = self.read_body(request)
            with self.sessions.begin() as session:
                call = Call(version=version, session=session, body=body,
                            query=request.args.to_dict(), service_down_time=self.service_down_time,
                            server_clock=self.server_clock, request_id=request_id,
                            global_request_id=global_id, base_url=base_url,
                            can_cast=self.caster is not None,
                            query_lists=request.args.to_dict(flat=False),
                            api_root=api_root or base_url + "/v2.1",
                            max_limit=self.max_limit)
                code, result = handler(call, **match.groupdict())
            self.send(call.casts, request_id)
        except ApiError as exc:
            LOG.info("refused %s %s: %d %s", request.method, rest, exc.code, exc.message)
            return _fault(exc.code, exc.message)
        except DBAPIError as exc:
            LOG.error("database error in %s %s: %s", request.method, rest,
                      str(exc.orig or exc).splitlines()[0])
            return _fault(503, "The database is unavailable; retry later.")
        except Exception:  # noqa: BLE001 - a bug: logged with its traceback, 500 for the client
            LOG.exception("unexpected error in %s %s", request.method, rest)
            return _fault(500, "Unexpected API Error. Please report this at the compute-agent "
                               f"issue tracker and attach the API log ({request_id}).")
        if result is None:
            return Response(status=code)
        return _json(code, result)

    def send(self, casts: list, request_id: str) -> None:
        """Send the committed request's casts; ApiError 503 when the broker cannot be
        reached (what was saved stays saved, and the log says which host was not asked)."""
        from agent.control.casts import send
        from agent.rpc.client import RpcError

        try:
            send(self.caster, casts)
        except RpcError as exc:
            hosts = ", ".join(sorted({c.host for c in casts}))
            LOG.error("request %s saved, but its cast to %s was not sent: %s", request_id,
                      hosts, exc)
            raise ApiError(503, "The message broker is unavailable: the request was saved "
                                f"but host {hosts} was not asked ({request_id}).") from None

    def read_body(self, request: Request):
        """The parsed JSON body (None when empty); 413 beyond max_body_bytes, 400 when it is
        not JSON."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise ApiError(413, f"Request is too large: {length} bytes, at most "
                                f"{self.max_body_bytes}.")
        raw = request.stream.read(self.max_body_bytes + 1)
        if len(raw) > self.max_body_bytes:
            raise ApiError(413, f"Request is too large: more than {self.max_body_bytes} "
                                "bytes.")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Malformed request body") from None


def _json(code: int, result: dict) -> Response:
    return Response(json.dumps(result), status=code, content_type=JSON)


def _fault(code: int, message: str) -> Response:
    return Response(fault_body(code, message), status=code, content_type=JSON)
