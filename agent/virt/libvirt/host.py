"""The libvirt host: owns the connection, libvirt's event loop, event dispatch and reconnects.

Threads:
- libvirt's default event loop runs on one daemon thread per process (libvirt's event
  implementation is process-wide). It calls our callbacks, which only put a record on a queue:
  they never block, log or call back into libvirt.
- A dispatcher thread per host drains that queue: it translates lifecycle events, holds STOPPED
  ones (see `events.EventDelayer`), tells the connection listener when the connection is lost,
  and reconnects with backoff, telling the listener again when it is back.

A libvirtd that hangs (frozen, deadlocked) keeps its socket open, and a libvirt call waits for
its answer for ever. Every connection therefore runs libvirt's keepalive
(`setKeepAlive(interval, count)`): after `interval x (count + 1)` seconds without an answer
libvirt closes the connection, every call waiting on it fails, and the close callback reports the
loss like any other ('keepalive timeout'). Opening a connection, which happens before keepalive
can run, is bounded the same way: it runs on a thread of its own and counts as failed when it
has not answered within that time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence

from agent.display import plural
from agent.errors import DriverError
from agent.failure_log import FailureLog
from agent.virt.libvirt import events
from agent.virt.libvirt.calls import CallLine, PendingOpen
from agent.virt.types import LifecycleEvent

LOG = logging.getLogger(__name__)

# Seconds between reconnect attempts; the last one repeats. Short first, so a restarted
# libvirtd is found quickly, then backing off so a dead one is not hammered.
RECONNECT_DELAYS_S: tuple[float, ...] = (1, 2, 4, 8, 15, 30)

# libvirt's own client defaults (libvirt.conf keepalive_interval, keepalive_count): a silent
# libvirtd is lost after 5 x (5 + 1) = 30 s.
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 5

# A call may take this long beyond the keepalive limit before its caller gives up on it: a
# destroy or a start of a large guest is legitimately slow while libvirtd answers keepalive.
CALL_GRACE_S = 60.0

# At shutdown, the longest wait for the connection's callbacks to be deregistered and the
# connection closed (a hung libvirtd must not hold the agent's exit).
CLOSE_TIMEOUT_S = 5.0

_CLOSE_REASONS = {
    0: "error on the connection",
    1: "libvirtd closed the connection (end of file)",
    2: "keepalive timeout",
    3: "closed by the client",
}
_STOP = object()

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def _swallow_libvirt_error(_ctx: Any, _error: Any) -> None:
    """libvirt's error handler: without one libvirt prints every error to stderr. Errors still
    reach us as exceptions."""


def start_event_loop(libvirt: Any) -> None:
    """Register libvirt's error handler and default event implementation and run its loop on a
    daemon thread; once per process, before the first connection is opened."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.registerErrorHandler(_swallow_libvirt_error, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop_thread = threading.Thread(target=run, name="libvirt-event-loop", daemon=True)
        _loop_thread.start()


def lost_reason(detail: str) -> str:
    return f"connection to libvirt lost: {detail}"


def silence_limit(interval: float, count: int) -> float:
    """Seconds without an answer after which libvirt's keepalive gives a connection up."""
    return interval * (count + 1)


class Host:
    """One libvirt connection and its events.

    `on_event(LifecycleEvent)` and `on_connection(available, reason)` (given here or through
    `bind`) are called from the dispatcher thread or, for held STOPPED events, a timer
    thread. `open_connection(uri)` defaults to `libvirt.open`; `stopped_delay` and
    `timer_factory` shape the STOPPED hold; `reconnect_delays` are the seconds between
    reconnect attempts (the last one repeats); `keepalive` is (interval in seconds, count) for
    libvirt's keepalive, and opening a connection may take at most
    `silence_limit(*keepalive)` seconds. Every call on the connection goes through a
    `CallLine` (one at a time, at most `silence_limit + CALL_GRACE_S` seconds each)."""

    def __init__(self, uri: str, *, on_event: Callable[[LifecycleEvent], None] | None = None,
                 on_connection: Callable[[bool, str], None] | None = None,
                 open_connection: Callable[[str], Any] | None = None,
                 stopped_delay: float = events.STOPPED_DELAY_S,
                 timer_factory: events.TimerFactory | None = None,
                 reconnect_delays: Sequence[float] = RECONNECT_DELAYS_S,
                 keepalive: tuple[int, int] = (KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT),
                 clock: Callable[[], float] = time.time):
        import libvirt

        self.uri = uri
        self._libvirt = libvirt
        self._open = open_connection or libvirt.open
        self._on_event = on_event
        self._on_connection = on_connection
        self._clock = clock
        self._reconnect_delays = tuple(reconnect_delays) or (1.0,)
        self._keepalive = (int(keepalive[0]), int(keepalive[1]))
        self.open_timeout = silence_limit(*self._keepalive)
        self.call_timeout = self.open_timeout + CALL_GRACE_S
        self._pending_open: PendingOpen | None = None
        self._has_daemon = True  # the last connection opened has a daemon behind it
        self._delayer = events.EventDelayer(self._emit_event, delay=stopped_delay,
                                            timer_factory=timer_factory)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._conn: Any = None  # the raw virConnect; only this class touches it
        self._line: CallLine | None = None  # runs every call on self._conn
        self._proxy: Any = None  # self._conn seen through self._line: what callers get
        self._callback_ids: list[int] = []
        self._stop = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._dispatch_failures = FailureLog(LOG, f"handling libvirt notifications from {uri}")

    def bind(self, *, on_event: Callable[[LifecycleEvent], None],
             on_connection: Callable[[bool, str], None]) -> None:
        """Set who hears lifecycle events and connection changes (the driver, before
        `initialize`)."""
        self._on_event = on_event
        self._on_connection = on_connection

    # -- lifecycle ----------------------------------------------------------------------------
    def initialize(self) -> None:
        """Start the event loop, connect, register callbacks, start dispatching. Raises
        `DriverError` when libvirt cannot be reached."""
        start_event_loop(self._libvirt)
        self._stop.clear()
        self._publish(self._connect())
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                            name=f"libvirt-dispatch {self.uri}")
        self._dispatcher.start()

    def close(self) -> None:
        """Stop dispatching, drop held events, close the connection. Never raises."""
        self._stop.set()
        self._queue.put(_STOP)
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=10)
            self._dispatcher = None
        self._delayer.cancel_all()
        pending, self._pending_open = self._pending_open, None
        if pending is not None:
            pending.abandon()
        with self._lock:
            conn, line = self._conn, self._line
            self._conn = self._line = self._proxy = None
        if conn is not None:
            # On the line, behind any call still running: never two calls at once. A hung
            # libvirtd gets CLOSE_TIMEOUT_S, then the process goes on without it.
            callback_ids, self._callback_ids = self._callback_ids, []
            if not line.post(lambda: self._disconnect(conn, callback_ids)).wait(
                    CLOSE_TIMEOUT_S):
                LOG.warning("libvirt at %s did not answer while closing the connection; "
                            "left behind", self.uri)
            line.close()

    def get_connection(self) -> Any:
        """The live connection, whose every call runs on its CallLine (bounded, one at a
        time); `DriverError` while it is lost (a reconnect is under way)."""
        with self._lock:
            conn, proxy = self._conn, self._proxy
        if conn is None:
            raise DriverError(f"no connection to libvirt at {self.uri} (reconnecting)")
        try:
            alive = conn.isAlive()  # local: no call to libvirtd
        except self._libvirt.libvirtError:
            alive = False
        if not alive:
            self._queue.put(("closed", conn, "the connection is no longer alive"))
            raise DriverError(f"no connection to libvirt at {self.uri} (reconnecting)")
        return proxy

    def _publish(self, conn: Any) -> None:
        line = CallLine(self.uri, self.call_timeout,
                        on_timeout=lambda what: self._queue.put(("closed", conn, what)))
        with self._lock:
            # Without a daemon (libvirt's in-process test hypervisor) nothing can hang and
            # calls are direct; the line still takes the connection's own closing.
            proxy = line.wrap(conn) if self._has_daemon else conn
            self._conn, self._line, self._proxy = conn, line, proxy

    def pending_stopped_events(self) -> list[str]:
        return self._delayer.pending()

    def _emit_event(self, event: LifecycleEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    # -- connecting ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        """A new connection with keepalive and callbacks, or DriverError. An open that has not
        answered within `open_timeout` fails; the next call waits for the same attempt
        rather than starting another one next to it."""
        pending = self._pending_open or PendingOpen(self._open, self.uri)
        self._pending_open = pending
        deadline = time.monotonic() + self.open_timeout
        while not pending.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if self._stop.is_set():
                raise DriverError(f"connecting to libvirt at {self.uri}: stopped")
            if time.monotonic() >= deadline:
                raise DriverError(f"cannot connect to libvirt at {self.uri}: no answer within "
                                  f"{self.open_timeout:g} s (libvirtd hung?)")
        self._pending_open = None
        if isinstance(pending.error, self._libvirt.libvirtError):
            raise DriverError(f"cannot connect to libvirt at {self.uri}: "
                              f"{pending.error.get_error_message()}") from None
        if pending.error is not None:
            raise pending.error
        conn = pending.conn
        if conn is None:
            raise DriverError(f"cannot connect to libvirt at {self.uri}")
        self._has_daemon = self._start_keepalive(conn)
        self._register_callbacks(conn)
        return conn

    def _start_keepalive(self, conn: Any) -> bool:
        """Start keepalive; False when the connection has no daemon behind it to ping."""
        interval, count = self._keepalive
        try:
            conn.setKeepAlive(interval, count)
        except self._libvirt.libvirtError as exc:
            # Drivers without a daemon (test:///, a local hypervisor) have nothing to ping.
            LOG.debug("No keepalive on %s: %s", self.uri, exc.get_error_message())
            return False
        return True

    def _register_callbacks(self, conn: Any) -> None:
        self._callback_ids = []
        try:
            self._callback_ids.append(conn.domainEventRegisterAny(
                None, self._libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle_callback,
                None))
        except self._libvirt.libvirtError as exc:
            LOG.debug("Lifecycle events are not available on %s: %s", self.uri, exc)
        try:
            conn.registerCloseCallback(self._close_callback, None)
        except self._libvirt.libvirtError as exc:
            LOG.debug("Close notifications are not available on %s: %s", self.uri, exc)

    def _disconnect(self, conn: Any, callback_ids: Sequence[int], *,
                    close: bool = True) -> None:
        """Deregister our callbacks; with `close`, close the connection too. A lost
        connection is not closed here: a job may still be inside a call on it (it fails once
        keepalive has given the connection up), and closing a connection under a running call
        frees what that call uses. libvirt-python closes it when the last reference goes."""
        for callback_id in callback_ids:
            try:
                conn.domainEventDeregisterAny(callback_id)
            except self._libvirt.libvirtError:
                pass
        for call in (conn.unregisterCloseCallback, conn.close) if close else (
                conn.unregisterCloseCallback,):
            try:
                call()
            except self._libvirt.libvirtError:
                pass

    # -- callbacks: libvirt's event-loop thread; they only queue --------------------------------
    def _lifecycle_callback(self, _conn: Any, dom: Any, event: int, detail: int,
                            _opaque: Any) -> None:
        self._queue.put(("lifecycle", dom, event, detail, self._clock()))

    def _close_callback(self, conn: Any, reason: int, _opaque: Any) -> None:
        self._queue.put(("closed", conn, _CLOSE_REASONS.get(reason, f"reason {reason}")))

    # -- dispatcher thread --------------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stop.is_set():
                return
            try:
                if item[0] == "lifecycle":
                    self._handle_lifecycle(*item[1:])
                else:
                    self._handle_closed(*item[1:])
            except Exception as exc:  # noqa: BLE001 - the dispatcher must outlive a bad listener
                self._dispatch_failures.failed(exc)
            else:
                self._dispatch_failures.succeeded()

    def _handle_lifecycle(self, dom: Any, event: int, detail: int, timestamp: float) -> None:
        uuid = dom.UUIDString()
        transition = events.transition_for(event, detail,
                                           lambda: self._migration_completed(dom))
        if transition is None:
            LOG.debug("Ignored libvirt event %d/%d of domain %s", event, detail, uuid)
            return
        LOG.debug("Domain %s: lifecycle event %s", uuid, transition.value)
        self._delayer.submit(LifecycleEvent(uuid, transition, timestamp))

    def _migration_completed(self, dom: Any) -> bool:
        with self._lock:
            line = self._line
        if line is None:
            return False
        try:
            stats = line.call(dom.jobStats, self._libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except self._libvirt.libvirtError as exc:
            LOG.debug("No job information for domain %s: %s", dom.UUIDString(), exc)
            return False
        return stats.get("type") == self._libvirt.VIR_DOMAIN_JOB_COMPLETED

    def _handle_closed(self, conn: Any, detail: str) -> None:
        with self._lock:
            if conn is not self._conn:
                return  # an old connection, already replaced or closed on purpose
            line, callback_ids = self._line, self._callback_ids
            self._conn = self._line = self._proxy = None
            self._callback_ids = []
        self._delayer.cancel_all()
        reason = lost_reason(detail)
        LOG.warning("%s (%s); reconnecting", reason, self.uri)
        # Behind whatever call is still running on it (never next to it); not waited for.
        line.post(lambda: self._disconnect(conn, callback_ids, close=False))
        line.close()
        if self._on_connection is not None:
            self._on_connection(False, reason)
        self._reconnect()

    def _reconnect(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            delay = self._reconnect_delays[min(attempt, len(self._reconnect_delays) - 1)]
            if self._stop.wait(delay):
                return
            attempt += 1
            try:
                conn = self._connect()
            except DriverError as exc:
                LOG.debug("Reconnect attempt %d failed: %s", attempt, exc)
                continue
            self._publish(conn)
            LOG.info("Connection to libvirt at %s restored after %s", self.uri,
                     plural(attempt, "attempt"))
            if self._on_connection is not None:
                self._on_connection(True, "")
            return
