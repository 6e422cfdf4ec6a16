"""The messaging transport: nova's ``[DEFAULT] transport_url`` read into kombu connections.

``rabbit://USER:PASS@HOST:PORT[,USER:PASS@HOST2:PORT]/VHOST`` as oslo.messaging reads it: one or
more brokers (tried in turn, as kombu's failover does), the virtual host after the first '/'
(empty means RabbitMQ's default '/'; '%2F' is '/' too). ``amqp://`` is accepted as a synonym,
``memory://`` is kombu's in-process transport (one process only; for tests of the codec paths).
``sqla+sqlite:///PATH`` is kombu's SQLAlchemy transport on a SQLite file: the broker of one
machine, with no server to run. It is what `url_for` chooses when transport_url is unset and the
database is a SQLite file (``broker.sqlite`` beside it, a file of its own so that the agent's
database is never locked by it; created 0640 like that database). kombu keeps a virtual
transport's exchange bindings in each process's memory, so a sender must declare the
destination queue and its binding itself (`Transport.virtual`; agent.rpc.client does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, unquote

from agent.redact import redact_url

SCHEMES = ("rabbit", "amqp", "memory", "sqla+sqlite")
BROKER_FILE = "broker.sqlite"


class TransportURLError(ValueError):
    """A transport URL that cannot be used; the message shows it with passwords masked.
    `expected` says what was expected instead (for the configuration's one-line refusal)."""

    def __init__(self, shown: str, expected: str):
        super().__init__(f"transport_url {shown!r}: expected {expected}")
        self.expected = expected


@dataclass(frozen=True)
class Transport:
    """Where to connect: kombu URLs (one per broker, tried in order) and the virtual host."""

    urls: tuple[str, ...]
    virtual_host: str
    shown: str  # the URL with passwords masked, for log lines
    virtual: bool = False  # a kombu virtual transport: bindings live in each process

    def connection(self, connect_timeout: float = 5.0, heartbeat: int = 0):
        """A new (not yet connected) kombu Connection over every broker, failover in order;
        `heartbeat` seconds of AMQP heartbeat (0: none; a consumer that must notice a silent
        broker sets it and calls heartbeat_check)."""
        import kombu

        if self.virtual:  # the SQLite broker file: created 0640, as the agent's database
            from agent.files import create_private_file

            create_private_file(self.urls[0][len("sqla+sqlite:///"):])
        return kombu.Connection(";".join(self.urls), connect_timeout=connect_timeout,
                                failover_strategy="round-robin", heartbeat=heartbeat)


def parse(url: str) -> Transport:
    """`Transport` for a transport_url; `TransportURLError` naming the masked URL and the
    problem (scheme, no host, bad port)."""
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise TransportURLError(shown, "a URL of scheme rabbit (or amqp), as nova's "
                                       "transport_url")
    if scheme == "memory":
        return Transport(("memory://",), "/", shown)
    if scheme == "sqla+sqlite":
        if not rest.startswith("/") or not rest.strip("/"):
            raise TransportURLError(shown, "sqla+sqlite:///PATH of a SQLite file")
        return Transport((url,), "/", shown, virtual=True)
    netloc, _, path = rest.partition("/")
    vhost = unquote(path.split("?", 1)[0]) or "/"
    urls = []
    for host in netloc.split(","):
        hostport = host.rpartition("@")[2]
        if not hostport.split(":")[0]:
            raise TransportURLError(shown, "a host name for every broker")
        if hostport.count(":") == 1 and not hostport.split(":")[1].isdigit():
            raise TransportURLError(shown, f"a port number after {hostport.split(':')[0]!r}")
        urls.append(f"amqp://{host}/{quote(vhost, safe='')}")
    return Transport(tuple(urls), vhost, shown)


def url_for(conf) -> str | None:
    """The transport URL the agent and its commands use: ``[DEFAULT] transport_url`` when set;
    unset with a SQLite database file (one machine), ``sqla+sqlite:///<its directory>/
    broker.sqlite`` (``<state_path>/broker.sqlite`` for the default database), so every process
    on that database meets on the same broker file; otherwise None (no compute RPC)."""
    if conf.transport_url:
        return conf.transport_url
    connection = str(conf.database.connection)
    if not connection.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    path = make_url(connection).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return "sqla+sqlite:///" + os.path.join(os.path.dirname(os.path.abspath(path)), BROKER_FILE)
