"""The receiving side of nova's compute RPC: consumes ``compute.<host>`` on exchange ``nova`` and
runs each request through that host's `Dispatcher`.

- One server is one broker connection. The agent serves its one host on it; `agent fleet`
  serves many simulated hosts on each of a few servers (`add_host`, at any time: the queue is
  declared and consumed within a second). A message goes to the dispatcher of the queue it
  was routed to (its routing key, ``compute.<host>``, as nova and this agent send it).
- One consumer thread owns the broker connection (kombu channels are not shared between
  threads): it declares the exchange and the queues (nova's flags), consumes, and does every
  ack and reply. Requests run on a small pool of worker threads; a finished one is handed back to
  the consumer thread, which replies (for a call) and only then acknowledges. The message is
  acknowledged only once the operation's outcome is saved: an agent that dies mid-operation
  leaves it unacknowledged and the broker delivers it again to the next agent on this queue.
  nova (oslo.messaging) acknowledges before dispatching, so a crash there loses the request and
  init_host's recovery has to finish the task.
- A message that is not JSON, not the 2.0 envelope or not a request is acknowledged and dropped
  with one warning naming the reason. An unknown method, an unsupported version or arguments
  that do not fit get a failure reply for a call and one warning for a cast. An operation that
  raises is a failure reply for a call; for a cast the operation has recorded its own outcome.
- Broker down at start or lost later: one warning, then reconnection with backoff (1 s doubling
  to 30 s) on the consumer thread; the queue is declared again and consumption resumes, with one
  line when it is back. Requests that finish while the connection is lost are not acknowledged
  on the new one: the broker redelivers them and the operations' task_state checks make the
  second delivery a no-op.

`is_healthy()` is false once the consumer thread has died (the watchdog reads it); a broker that
is down is not unhealthy (the agent keeps beating and retries). `counts()` says what the server
has done so far (the fleet's report).
"""

from __future__ import annotations

import logging
import queue as queue_module
import socket
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable

from agent.log import request_context
from agent.redact import redact_text
from agent.rpc import wire
from agent.rpc.client import EXCHANGE, TOPIC, exchange, topic_queue
from agent.rpc.dispatcher import Dispatcher, MissingArgument
from agent.rpc.transport import Transport

LOG = logging.getLogger(__name__)

REFUSALS = (wire.NoSuchMethod, wire.UnsupportedVersion, MissingArgument)


class RpcServer:
    """Consumes the queues of one or more hosts on one connection: `RpcServer(transport, host,
    dispatcher)` for one, `add_host` for more. `start()` once (returns whether the queues were
    declared within `declare_timeout` seconds), `stop()` once."""

    def __init__(self, transport: Transport, host: str | None = None,
                 dispatcher: Dispatcher | None = None, *,
                 workers: int = 4, exchange_name: str = EXCHANGE, topic: str = TOPIC,
                 backoff: tuple[float, float] = (1.0, 30.0), heartbeat: int = 30,
                 connect_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 name: str = "rpc", executor: Executor | None = None,
                 busy_poll: float = 0.005):
        self._transport = transport
        self._topic = topic
        self._routes: dict[str, Dispatcher] = {}  # queue name -> its host's dispatcher
        self._routes_lock = threading.Lock()
        self.queue_name: str | None = None  # the first host's queue (log lines, tests)
        if host is not None:
            if dispatcher is None:
                raise TypeError("RpcServer: a host needs its dispatcher")
            self.add_host(host, dispatcher)
        self._exchange = exchange(exchange_name)
        self._backoff = backoff
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._workers = workers
        self._name = name
        # While requests run, the consumer thread looks for finished ones (to reply and
        # acknowledge them: only it may use the channel) this often, in seconds.
        self._busy_poll = busy_poll
        # The threads running requests: the server's own, or an executor shared by several
        # servers (the fleet's), which its owner shuts down.
        self._own_pool = executor is None
        self._pool = executor or ThreadPoolExecutor(workers, thread_name_prefix=f"{name}-worker")
        self._done: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._inflight = 0
        self._generation = 0
        self._stopping = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost_since: float | None = None
        self.consuming = threading.Event()  # set while the queues are consumed
        # Written by the consumer thread only (read by others for reports).
        self.queues_consumed = 0  # queues consumed on the current connection
        self._counts = {"requests": 0, "failed": 0, "refused": 0, "dropped": 0}

    def add_host(self, host: str, dispatcher: Dispatcher) -> str:
        """Serve `host` too: its queue ``compute.<host>`` is declared and consumed on this
        server's connection (by the consumer thread, within a second when it runs; at every
        reconnection too). Returns the queue name. Thread-safe."""
        name = topic_queue(host, self._topic)
        with self._routes_lock:
            self._routes[name] = dispatcher
            if self.queue_name is None:
                self.queue_name = name
        return name

    def queue_names(self) -> list[str]:
        """Every queue this server serves (consumed or about to be)."""
        with self._routes_lock:
            return list(self._routes)

    def counts(self) -> dict[str, int]:
        """What was received so far: requests run (`failed` of them raised), refused (unknown
        method or version, arguments that do not fit) and dropped (malformed, or on no queue
        of this server)."""
        return dict(self._counts)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, declare_timeout: float = 10.0) -> bool:
        """Start the consumer thread and wait until its first connection declared the queue
        (True) or failed (False: one warning; it keeps retrying)."""
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-consumer",
                                        daemon=True)
        self._thread.start()
        self._first_attempt.wait(declare_timeout)
        return self.consuming.is_set()

    def stop(self, wait: bool = True) -> None:
        """Stop consuming, let the running operations finish and acknowledge them, close the
        connection. Requests not finished are left to the broker (delivered again). Without
        `wait` it only asks (stopping many servers at once); a later stop() waits."""
        self._stopping.set()
        if not wait:
            return
        if self._thread is not None:
            self._thread.join()
        if self._own_pool:
            self._pool.shutdown(wait=True)

    def is_healthy(self) -> bool:
        return self._thread is None or self._thread.is_alive() or self._stopping.is_set()

    # -- the consumer thread ------------------------------------------------------------------
    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            try:
                self._consume()
                return
            except Exception as exc:  # noqa: BLE001 - any connection or channel error
                self.consuming.clear()
                if self._lost_since is None:
                    self._lost_since = self._clock()
                    LOG.warning("message broker %s unreachable (%s): not taking requests on %s; "
                                "retrying with backoff", self._transport.shown,
                                redact_text(str(exc) or type(exc).__name__), self._shown())
                else:
                    LOG.debug("broker still unreachable: %s", redact_text(str(exc)))
                self._first_attempt.set()
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._backoff[1])

    def _consume(self) -> None:
        import kombu

        conn = self._transport.connection(self._connect_timeout, heartbeat=self._heartbeat)
        try:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            # Per consumer (global=False): each queue gets this many unacknowledged messages.
            channel.basic_qos(0, self._workers * 2, False)
            self._generation += 1
            generation = self._generation
            producer = kombu.Producer(channel)
            consumer = kombu.Consumer(channel, queues=[], no_ack=False,
                                      on_message=lambda message: self._on_message(
                                          generation, message, producer))
            declared: set[str] = set()
            self.queues_consumed = 0
            self._consume_new(consumer, declared)
            self._connected()
            while not self._stopping.is_set():
                self._flush(generation, producer)
                if len(self._routes) != len(declared):
                    self._consume_new(consumer, declared)
                try:
                    conn.drain_events(timeout=self._busy_poll if self._inflight else 1.0)
                except socket.timeout:
                    pass
                if self._heartbeat:
                    conn.heartbeat_check()
            consumer.cancel()
            while self._inflight > 0:  # the running requests: answered and acknowledged
                self._finish(generation, producer, self._done.get())
        finally:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass

    def _consume_new(self, consumer: Any, declared: set[str]) -> None:
        """Declare (nova's flags) and consume the queues added since the last time."""
        import kombu

        with self._routes_lock:
            new = [name for name in self._routes if name not in declared]
        for name in new:
            consumer.add_queue(kombu.Queue(name, exchange=self._exchange, routing_key=name,
                                           durable=False, auto_delete=False))
            declared.add(name)
        if new:
            consumer.consume()
            self.queues_consumed = len(declared)
            if self.consuming.is_set():
                LOG.debug("consuming %s more: %s", len(new), ", ".join(new))

    def _shown(self) -> str:
        """The queues in a log line: the name of the only one, else how many."""
        names = self.queue_names()
        return names[0] if len(names) == 1 else f"{len(names)} queues"

    def _connected(self) -> None:
        self.consuming.set()
        if self._lost_since is not None:
            LOG.info("message broker %s reachable again after %.0f s: consuming %s",
                     self._transport.shown, self._clock() - self._lost_since, self._shown())
            self._lost_since = None
        else:
            LOG.info("consuming %s on exchange %s (%s)", self._shown(), self._exchange.name,
                     self._transport.shown)
        self._first_attempt.set()

    def _dispatcher_of(self, message: Any) -> tuple[str, Dispatcher | None]:
        """The queue a message came from (its routing key) and that host's dispatcher."""
        name = (message.delivery_info or {}).get("routing_key") or ""
        dispatcher = self._routes.get(name)
        if dispatcher is None and len(self._routes) == 1:  # e.g. bound under another key
            name, dispatcher = next(iter(self._routes.items()))
        return name, dispatcher

    def _on_message(self, generation: int, message: Any, producer: Any) -> None:
        queue_name, dispatcher = self._dispatcher_of(message)
        try:
            if dispatcher is None:
                raise wire.BadMessage(f"routing key {queue_name!r} is not a queue of this "
                                      "server")
            request = wire.decode_request(message.body)
        except wire.BadMessage as exc:
            LOG.warning("message on %s dropped: %s", queue_name, exc)
            self._counts["dropped"] += 1
            message.ack()
            return
        try:
            bound = dispatcher.bind(request)
        except REFUSALS as exc:
            with request_context(request.context.log_prefix()):
                LOG.warning("%s %s refused: %s", "call" if request.is_call else "cast",
                            request.method, exc)
            if request.is_call:
                self._reply(producer, request, None, wire.failure_of(exc, with_traceback=False))
            self._counts["refused"] += 1
            message.ack()
            return
        self._inflight += 1
        self._counts["requests"] += 1
        self._pool.submit(self._work, generation, message, request, bound)

    def _work(self, generation: int, message: Any, request: wire.Request, bound) -> None:
        result, failure = None, None
        with request_context(request.context.log_prefix()):
            try:
                result = bound.run(request.context)
            except Exception as exc:  # noqa: BLE001 - the caller hears of it, the agent lives
                LOG.error("%s failed: %s", request.method, redact_text(str(exc)),
                          exc_info=not request.is_call)
                failure = wire.failure_of(exc)
        self._done.put((generation, message, request, result, failure))

    def _flush(self, generation: int, producer: Any) -> None:
        while True:
            try:
                done = self._done.get_nowait()
            except queue_module.Empty:
                return
            self._finish(generation, producer, done)

    def _finish(self, generation: int, producer: Any, done: tuple) -> None:
        """A finished request: the reply of a call, then the ack (on the connection it came
        on only; otherwise the broker delivers it again)."""
        done_generation, message, request, result, failure = done
        self._inflight -= 1
        if failure is not None:
            self._counts["failed"] += 1
        if request.is_call:
            self._reply(producer, request, result, failure)
        if done_generation == generation:
            message.ack()

    def _reply(self, producer: Any, request: wire.Request, result: Any,
               failure: str | None) -> None:
        producer.publish(wire.encode_reply(request.msg_id, result, failure), exchange="",
                         routing_key=request.reply_q, content_type="application/json",
                         content_encoding="utf-8")
