"""Fault switches of the fake hypervisor, reachable as `FakeDriver.faults`.

Tests flip these to make the fake fail the way real hypervisors do: `init_host` refuses, the
connection drops and comes back, one call fails for one instance, a call is slow. Every driver
method passes through `Faults.check(method, instance_uuid)` before it does anything.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from agent.errors import AgentError, DriverError

LOG = logging.getLogger(__name__)

DEFAULT_INIT_HOST_MESSAGE = "fakevirt: the hypervisor refused the connection (injected fault)"


class Faults:
    """The switches. `notify_connection(available, reason)` is called when the connection drops
    or comes back (the driver passes its `emit_connection`); `sleep` is the driver's."""

    def __init__(self, notify_connection: Callable[[bool, str], None],
                 sleep: Callable[[float], None]):
        self._notify_connection = notify_connection
        self._sleep = sleep
        self._lock = threading.Lock()
        self._disconnected: str | None = None
        self._failures: dict[tuple[str, str | None], AgentError] = {}
        self._delays: dict[str, float] = {}

    # -- switches -------------------------------------------------------------------------
    def fail_init_host(self, message: str = DEFAULT_INIT_HOST_MESSAGE,
                       exc: DriverError | None = None) -> None:
        """`init_host` raises `exc` (default: DriverError(message)) until cleared."""
        self.fail("init_host", exc=exc if exc is not None else DriverError(message))

    def drop_connection(self, reason: str = "connection to the fake hypervisor lost") -> None:
        """Every call raises DriverError(reason) until `restore_connection`; connection
        listeners hear (False, reason). Dropping an already dropped connection does nothing."""
        with self._lock:
            if self._disconnected is not None:
                return
            self._disconnected = reason
        LOG.info("fakevirt: connection dropped: %s", reason)
        self._notify_connection(False, reason)

    def restore_connection(self) -> None:
        """Calls work again; connection listeners hear (True, "")."""
        with self._lock:
            if self._disconnected is None:
                return
            self._disconnected = None
        LOG.info("fakevirt: connection restored")
        self._notify_connection(True, "")

    def fail(self, method: str, instance_uuid: str | None = None,
             exc: AgentError | None = None) -> None:
        """`method` raises `exc` (default: DriverError naming method and instance) when called
        for `instance_uuid` (None: for any instance, or a call with no instance)."""
        if exc is None:
            target = f" for instance {instance_uuid}" if instance_uuid else ""
            exc = DriverError(f"fakevirt: {method} failed{target} (injected fault)")
        with self._lock:
            self._failures[(method, instance_uuid)] = exc

    def slow(self, method: str, seconds: float) -> None:
        """`method` sleeps `seconds` (with the driver's sleep) before it runs."""
        with self._lock:
            self._delays[method] = seconds

    def clear(self) -> None:
        """Every switch off; a dropped connection is restored (listeners hear it)."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()
        self.restore_connection()

    # -- the driver's side ----------------------------------------------------------------
    def check(self, method: str, instance_uuid: str | None = None) -> None:
        """Called by the driver at the start of `method`: sleeps, then raises if a switch
        says so."""
        with self._lock:
            delay = self._delays.get(method)
            disconnected = self._disconnected
            error = (self._failures.get((method, instance_uuid))
                     or self._failures.get((method, None))) if self._failures else None
        if delay:
            self._sleep(delay)
        if disconnected is not None:
            raise DriverError(f"fakevirt: {method}: {disconnected}")
        if error is not None:
            raise error
