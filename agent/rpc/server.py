"""The receiving side of nova's compute RPC: consumes ``compute.<host>`` on exchange ``nova`` and
runs each request through a `Dispatcher`.

- One consumer thread owns the broker connection (kombu channels are not shared between
  threads): it declares the exchange and the queue (nova's flags), consumes, and does every ack
  and reply. Requests run on a small pool of worker threads; a finished one is handed back to
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
is down is not unhealthy (the agent keeps beating and retries).
"""

from __future__ import annotations

import logging
import queue as queue_module
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    """Consumes one host's queue. `start()` once (returns whether the queue was declared within
    `declare_timeout` seconds), `stop()` once."""

    def __init__(self, transport: Transport, host: str, dispatcher: Dispatcher, *,
                 workers: int = 4, exchange_name: str = EXCHANGE, topic: str = TOPIC,
                 backoff: tuple[float, float] = (1.0, 30.0), heartbeat: int = 30,
                 connect_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.queue_name = topic_queue(host, topic)
        self._transport = transport
        self._dispatcher = dispatcher
        self._exchange = exchange(exchange_name)
        self._backoff = backoff
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rpc-worker")
        self._done: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._inflight = 0
        self._generation = 0
        self._stopping = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost_since: float | None = None
        self.consuming = threading.Event()  # set while the queue is consumed

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, declare_timeout: float = 10.0) -> bool:
        """Start the consumer thread and wait until its first connection declared the queue
        (True) or failed (False: one warning; it keeps retrying)."""
        self._thread = threading.Thread(target=self._run, name="rpc-consumer", daemon=True)
        self._thread.start()
        self._first_attempt.wait(declare_timeout)
        return self.consuming.is_set()

    def stop(self) -> None:
        """Stop consuming, let the running operations finish and acknowledge them, close the
        connection. Requests not finished are left to the broker (delivered again)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
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
                                redact_text(str(exc) or type(exc).__name__), self.queue_name)
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
            channel.basic_qos(0, self._workers * 2, False)
            queue = kombu.Queue(self.queue_name, exchange=self._exchange,
                                routing_key=self.queue_name, durable=False, auto_delete=False,
                                channel=channel)
            queue.declare()
            self._generation += 1
            generation = self._generation
            consumer = kombu.Consumer(channel, queues=[queue], no_ack=False,
                                      on_message=lambda message: self._on_message(
                                          generation, message, producer))
            producer = kombu.Producer(channel)
            consumer.consume()
            self._connected()
            while not self._stopping.is_set():
                self._flush(generation, producer)
                try:
                    conn.drain_events(timeout=0.005 if self._inflight else 1.0)
                except socket.timeout:
                    pass
                if self._heartbeat:
                    conn.heartbeat_check()
            consumer.cancel()
            self._pool.shutdown(wait=True)
            self._flush(generation, producer)
        finally:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass

    def _connected(self) -> None:
        self.consuming.set()
        if self._lost_since is not None:
            LOG.info("message broker %s reachable again after %.0f s: consuming %s",
                     self._transport.shown, self._clock() - self._lost_since, self.queue_name)
            self._lost_since = None
        else:
            LOG.info("consuming %s on exchange %s (%s)", self.queue_name, self._exchange.name,
                     self._transport.shown)
        self._first_attempt.set()

    def _on_message(self, generation: int, message: Any, producer: Any) -> None:
        try:
            request = wire.decode_request(message.body)
        except wire.BadMessage as exc:
            LOG.warning("message on %s dropped: %s", self.queue_name, exc)
            message.ack()
            return
        try:
            bound = self._dispatcher.bind(request)
        except REFUSALS as exc:
            with request_context(request.context.log_prefix()):
                LOG.warning("%s %s refused: %s", "call" if request.is_call else "cast",
                            request.method, exc)
            if request.is_call:
                self._reply(producer, request, None, wire.failure_of(exc, with_traceback=False))
            message.ack()
            return
        self._inflight += 1
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
                done_generation, message, request, result, failure = self._done.get_nowait()
            except queue_module.Empty:
                return
            self._inflight -= 1
            if request.is_call:
                self._reply(producer, request, result, failure)
            if done_generation == generation:
                message.ack()

    def _reply(self, producer: Any, request: wire.Request, result: Any,
               failure: str | None) -> None:
        producer.publish(wire.encode_reply(request.msg_id, result, failure), exchange="",
                         routing_key=request.reply_q, content_type="application/json",
                         content_encoding="utf-8")
