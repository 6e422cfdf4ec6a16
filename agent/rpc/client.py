"""The sending side of nova's compute RPC: what ``nova.compute.rpcapi.ComputeAPI`` does on the
wire, on kombu.

`RpcClient.cast` publishes a request to exchange ``nova`` (topic, durable=false,
auto_delete=false: nova's flags, or RabbitMQ refuses the declaration) with routing key
``compute.<host>``, persistent (delivery_mode 2), application/json. A cast to a host whose queue
does not exist is dropped by the broker, as for nova; on a virtual transport (the one-machine
SQLite broker) the sender declares ``compute.<host>`` and its binding itself, since kombu keeps
bindings in each process's memory. `RpcClient.call` adds ``_msg_id``,
``_reply_q`` and ``_timeout``, waits for the reply on its own reply queue (RabbitMQ's default
exchange, routing key = queue name, as oslo.messaging replies) and returns the result, or raises
`RemoteError` (the server's failure) or `RpcTimeout`. A broker that cannot be reached, or that
refuses the login or the vhost, is `BrokerUnreachable` naming it (password masked) for both.

One client holds one connection, used by one thread at a time (a lock); open it once per
process or command and `close()` it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from agent.context import RequestContext
from agent.redact import redact_text
from agent.rpc import wire
from agent.rpc.transport import Transport, parse, url_for

EXCHANGE = "nova"
TOPIC = "compute"


class RpcError(Exception):
    """Base of the sending side's errors."""


class BrokerUnreachable(RpcError):
    """The message broker could not be reached or refused the connection (oslo.messaging's
    MessageDeliveryFailure); the message names the broker, its password masked."""


class RpcTimeout(RpcError):
    """No reply to a call within its timeout (oslo.messaging's MessagingTimeout)."""


class RemoteError(RpcError):
    """The server answered a call with a failure: its exception class, module and message."""

    def __init__(self, exc_type: str, module: str, message: str, tb: list[str] | None = None):
        super().__init__(f"{exc_type}: {message}")
        self.exc_type, self.module, self.message, self.tb = exc_type, module, message, tb or []


def client_for(conf, connect_timeout: float = 5.0) -> "RpcClient | None":
    """The RPC client of every process that asks compute hosts to act (`agent server`,
    `agent evacuate`, `agent api`): over `url_for(conf)`, i.e. ``[DEFAULT] transport_url``
    when set, else the SQLite broker file beside a SQLite database file (the embedded default,
    where the agent consumes), else None (a database server and no transport_url: no host can
    be reached). Not connected until its first cast; `close()` it."""
    url = url_for(conf)
    return RpcClient(parse(url), connect_timeout=connect_timeout) if url else None


def topic_queue(host: str, topic: str = TOPIC) -> str:
    """The per-host queue (and routing key): 'compute.<host>'."""
    return f"{topic}.{host}"


def exchange(name: str = EXCHANGE):
    import kombu

    return kombu.Exchange(name, type="topic", durable=False, auto_delete=False)


class RpcClient:
    """Casts and calls to compute hosts over one broker connection."""

    def __init__(self, transport: Transport, *, exchange_name: str = EXCHANGE,
                 topic: str = TOPIC, connect_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._transport = transport
        self._exchange = exchange(exchange_name)
        self._topic = topic
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = None

    @property
    def transport(self) -> Transport:
        """Where this client sends."""
        return self._transport

    def cast(self, host: str, method: str, version: str, context: RequestContext,
             **args: Any) -> None:
        """Send `method(**args)` to `host` without waiting (nova's ``cctxt.cast``)."""
        body = wire.encode_request(context, method, version, args)
        with self._lock, self._broker_errors():
            self._publish(body, self._exchange, topic_queue(host, self._topic))

    def call(self, host: str, method: str, version: str, context: RequestContext,
             timeout: float = 60.0, **args: Any) -> Any:
        """Send `method(**args)` to `host` and return its result; `RemoteError` for a failure
        reply, `RpcTimeout` after `timeout` seconds without one (the request then expires
        unread in the queue, as a call's AMQP expiration says)."""
        import kombu

        msg_id = uuid.uuid4().hex
        reply_q = f"reply_{uuid.uuid4().hex}"
        body = wire.encode_request(context, method, version, args, msg_id=msg_id,
                                   reply_q=reply_q, timeout=timeout)
        replies: list[wire.Reply] = []

        def on_reply(payload: Any, message: Any) -> None:
            message.ack()
            try:
                reply = wire.decode_reply(message.body)
            except wire.BadMessage:
                return
            if reply.msg_id == msg_id:
                replies.append(reply)

        with self._lock, self._broker_errors():
            conn = self._connection()
            queue = kombu.Queue(reply_q, exchange=kombu.Exchange("", type="direct"),
                                routing_key=reply_q, durable=False, auto_delete=True,
                                exclusive=True, channel=conn.default_channel)
            queue.declare()
            with kombu.Consumer(conn.default_channel, queues=[queue], callbacks=[on_reply],
                                accept=None, no_ack=False):
                self._publish(body, self._exchange, topic_queue(host, self._topic),
                              expiration=timeout)
                deadline = self._clock() + timeout
                while not any(reply.ending for reply in replies):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise RpcTimeout(f"no reply to {method} from {host} within "
                                         f"{timeout:g} s")
                    try:
                        conn.drain_events(timeout=min(remaining, 1.0))
                    except socket.timeout:
                        continue
        reply = replies[-1]
        if reply.failure is not None:
            failure = reply.failure
            raise RemoteError(str(failure.get("class", "Exception")),
                              str(failure.get("module", "")), str(failure.get("message", "")),
                              failure.get("tb"))
        return reply.result

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.release()
                self._conn = None

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _broker_errors(self) -> Iterator[None]:
        import amqp.exceptions
        import kombu.exceptions

        try:
            yield
        except (OSError, kombu.exceptions.KombuError, amqp.exceptions.AMQPError) as exc:
            raise BrokerUnreachable(
                f"message broker {self._transport.shown} unreachable: "
                f"{redact_text(str(exc) or type(exc).__name__)}") from exc

    def _connection(self):
        if self._conn is None:
            self._conn = self._transport.connection(self._connect_timeout)
        self._conn.ensure_connection(max_retries=1)
        return self._conn

    def _publish(self, body: bytes, target, routing_key: str,
                 expiration: float | None = None) -> None:
        import kombu

        conn = self._connection()
        if self._transport.virtual and target.name:
            # The receiver's binding is in its own process: declare it here too (same flags).
            kombu.Queue(routing_key, exchange=target, routing_key=routing_key, durable=False,
                        auto_delete=False, channel=conn.default_channel).declare()
        producer = kombu.Producer(conn.default_channel)
        publish = conn.ensure(producer, producer.publish, max_retries=2)
        publish(body, exchange=target, routing_key=routing_key, declare=[target],
                content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                expiration=expiration)
