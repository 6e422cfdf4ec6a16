"""Every libvirt call of one connection, one at a time, on a thread of its own, with a limit.

Why one at a time: when libvirt's keepalive gives up a connection to a libvirtd that stopped
answering, only the call that is reading the socket is told; other calls waiting on the same
connection stay blocked, and crash the process when libvirtd answers again (libvirt 9). With one
call in flight at most, keepalive turns a hung libvirtd into an error for that call, and the
calls queued behind it fail at once on the closed connection.

Why a limit: the caller waits at most `timeout` seconds for its call to be run and answered,
whatever happens below; past it the call raises `DriverError` and the connection counts as lost
(`on_timeout`). The worker may stay blocked a while longer, until keepalive releases it.

`CallLine.wrap(conn)` returns a stand-in for the connection whose methods run on the line;
domains (`virDomain`) it returns, alone or inside lists and tuples, are wrapped the same way.
Opening a connection (before there is a line) is bounded by `PendingOpen`.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from agent.errors import DriverError

LOG = logging.getLogger(__name__)

_STOP = object()

# Methods libvirt answers from the client's own copy, without asking libvirtd: called directly,
# not through the line (a guest listing asks each guest for these).
_LOCAL_METHODS = frozenset({"UUIDString", "UUID", "name", "ID", "isAlive"})


class _Call:
    __slots__ = ("func", "args", "kwargs", "done", "result", "error", "abandoned")

    def __init__(self, func, args, kwargs):
        self.func, self.args, self.kwargs = func, args, kwargs
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


class CallLine:
    """Runs the calls of one libvirt connection in order on one daemon thread. `timeout` is
    the longest a caller waits (seconds); `on_timeout(description)` is called (once per
    timed-out call, from the caller's thread) so the owner can declare the connection lost."""

    def __init__(self, name: str, timeout: float, *,
                 on_timeout: Callable[[str], None] | None = None):
        self.name = name
        self.timeout = float(timeout)
        self._on_timeout = on_timeout
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"libvirt-calls {name}",
                                        daemon=True)
        self._thread.start()

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """func(*args, **kwargs) on the line's thread; its result or its exception, or
        DriverError after `timeout` seconds."""
        if self._closed:
            raise DriverError(f"libvirt connection {self.name} is closed")
        item = _Call(func, args, kwargs)
        self._queue.put(item)
        if not item.done.wait(self.timeout):
            item.abandoned = True
            what = getattr(func, "__name__", "call")
            if self._on_timeout is not None:
                self._on_timeout(f"no answer to {what} within {self.timeout:g} s")
            raise DriverError(f"libvirt: {what} got no answer within {self.timeout:g} s "
                              "(libvirtd hung?)")
        if item.error is not None:
            raise item.error
        return item.result

    def post(self, func: Callable[[], Any]) -> threading.Event:
        """Queue func() without waiting for it; the returned event is set once it has run
        (also when it raised: the error is dropped)."""
        item = _Call(func, (), {})
        self._queue.put(item)
        return item.done

    def close(self) -> None:
        """No new calls; the thread ends after the queued ones."""
        self._closed = True
        self._queue.put(_STOP)

    def wrap(self, target: Any) -> Any:
        return _OnLine(target, self)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if item.abandoned:
                continue
            try:
                item.result = item.func(*item.args, **item.kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                item.error = exc
            item.done.set()


class _OnLine:
    """A libvirt object whose methods run on a CallLine."""

    __slots__ = ("_target", "_line")

    def __init__(self, target: Any, line: CallLine):
        self._target = target
        self._line = line

    @property
    def unwrapped(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or name in _LOCAL_METHODS:
            return attr
        line = self._line

        def on_line(*args: Any, **kwargs: Any) -> Any:
            return _wrap_result(line.call(attr, *args, **kwargs), line)

        on_line.__name__ = name
        return on_line


def _wrap_result(value: Any, line: CallLine) -> Any:
    import libvirt

    if isinstance(value, libvirt.virDomain):
        return _OnLine(value, line)
    if isinstance(value, list):
        return [_wrap_result(item, line) for item in value]
    if isinstance(value, tuple):
        return tuple(_wrap_result(item, line) for item in value)
    return value


class PendingOpen:
    """One `open(uri)` on a daemon thread of its own, so that a hung libvirtd cannot hang the
    caller: wait for it with a timeout, wait again later, or abandon it (a connection it opens
    after being abandoned is closed at once)."""

    def __init__(self, open_connection: Callable[[str], Any], uri: str):
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self.conn: Any = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(open_connection, uri), daemon=True,
                         name=f"libvirt-open {uri}").start()

    def _run(self, open_connection: Callable[[str], Any], uri: str) -> None:
        try:
            conn = open_connection(uri)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.error = exc
            conn = None
        with self._lock:
            self.conn = conn
            abandoned = self._abandoned
        self._done.set()
        if abandoned and conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - nobody wants this connection
                pass

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            conn = self.conn if self._done.is_set() else None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
