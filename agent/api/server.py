"""The `agent api` process: the bind rule, the application over the configured database, and
the WSGI server.

The server is waitress (pure Python, no C extension, threads sized by [api] workers; see
docs/api.md for the choice). Authentication: only `noauth`, which trusts every request, so it is
served on a loopback address only; `wrap_auth` is where an authentication middleware (keystone's
auth_token) would wrap the application.
"""

from __future__ import annotations

import ipaddress
import logging
import signal

from agent.errors import ConfigError

LOG = logging.getLogger(__name__)


def parse_bind(text: str, where: str = "[api] bind") -> tuple[str, int]:
    """'ADDR:PORT' or '[V6ADDR]:PORT' -> (addr, port); ConfigError naming `where` otherwise.
    ADDR is an IP address or 'localhost'; PORT 1..65535."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    problem = None
    if not sep or not host:
        problem = "expected ADDR:PORT, e.g. 127.0.0.1:8774 or [::1]:8774"
    elif not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        problem = f"port {port_text!r} is not an integer from 1 to 65535"
    elif host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            problem = f"{host!r} is not an IP address (or 'localhost')"
    if problem:
        raise ConfigError(f"{where} = {text!r}: {problem}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def check_access(host: str, port: int, auth_strategy: str, where: str = "[api] bind") -> None:
    """ConfigError (exit 2) for an address other than loopback without an authentication
    strategy: with noauth anyone who reaches the port may disable or delete services."""
    if auth_strategy == "noauth" and not is_loopback(host):
        raise ConfigError(f"{where} {host}:{port} is not a loopback address, and the "
                          "authentication strategy noauth trusts every request: bind to "
                          "127.0.0.1 or ::1 (no other strategy is available yet)")


def wrap_auth(app, auth_strategy: str):
    """The application behind the configured authentication (noauth: as it is)."""
    return app


def build_app(conf, db, caster=None):
    """The application over `db`; `caster` the process's one RPC client (None when no host
    can be reached, see `rpc_client`: server actions and create then answer 503)."""
    from agent.api.app import ApiApp

    return wrap_auth(ApiApp(db.sessions, service_down_time=conf.service_down_time,
                            server_clock=db.engine.dialect.name != "sqlite",
                            max_body_bytes=conf.api.max_request_body_size, caster=caster,
                            max_limit=conf.api.max_limit),
                     conf.api.auth_strategy)


def rpc_client(conf):
    """The process's one RPC client, chosen as `agent server` chooses it
    (agent.rpc.client.client_for: transport_url, else the SQLite broker file beside a SQLite
    database); None, with one warning, for a database server without transport_url. The
    connection opens at the first cast."""
    from agent.rpc.client import client_for

    client = client_for(conf)
    if client is None:
        LOG.warning("no transport_url (and a database server, which has no default broker): "
                    "server actions and create answer 503 (compute hosts cannot be reached)")
    return client


def serve(app, host: str, port: int, threads: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    from waitress.server import create_server

    server = create_server(app, host=host, port=port, threads=threads,
                           ident="compute-agent", clear_untrusted_proxy_headers=True)

    def stop(signum, _frame):
        LOG.info("stopping (signal %d)", signum)
        raise SystemExit(0)

    # SIGINT too, not left to KeyboardInterrupt: a process started in the background by a
    # shell without job control inherits SIGINT ignored, and Ctrl-C should end it with 0.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    shown = f"[{host}]" if ":" in host else host
    # No "noauth:" in this line: the log's secret masking reads "<...auth>: value" as a
    # credential and would print "noauth: ***".
    LOG.info("compute API listening on http://%s:%s/v2.1 (authentication strategy noauth, "
             "loopback only: every request is trusted)", shown, server.effective_port)
    try:
        server.run()
    finally:
        server.close()
