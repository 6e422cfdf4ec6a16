"""Fault switches of the fake hypervisor, reachable as `FakeDriver.faults`.

Tests flip these to make the fake fail the way real hypervisors do: `init_host` refuses, the
connection drops and comes back, one call fails for one instance, a call is slow, something else
happens just before a call (`call_before`: a row moved by another host, a pause at a barrier).
Every driver method passes through `Faults.check(method, instance_uuid)` before it does anything.

An agent process on fakevirt pauses at a barrier when started with FAKEVIRT_PAUSE=METHOD:DIR: at
the first call of METHOD it creates DIR/paused and waits until DIR/resume exists, so a test can
act on the database at a known point of the agent's work, without timing.
FAKEVIRT_PAUSE_AFTER=METHOD:DIR does the same once METHOD has done its work (the guest changed,
the domains file written) and before it returns: the point where a hypervisor acted and the
agent has not yet saved the outcome.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Mapping

from agent.errors import AgentError, DriverError

LOG = logging.getLogger(__name__)

DEFAULT_INIT_HOST_MESSAGE = "fakevirt: the hypervisor refused the connection (injected fault)"
PAUSE_ENV = "FAKEVIRT_PAUSE"
PAUSE_AFTER_ENV = "FAKEVIRT_PAUSE_AFTER"
PAUSE_DEADLINE = 300.0  # seconds a barrier waits for its resume file before failing the call


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
        self._before: dict[tuple[str, str | None], Callable[[], None]] = {}
        self._after: dict[tuple[str, str | None], Callable[[], None]] = {}

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

    def call_before(self, method: str, action: Callable[[], None],
                    instance_uuid: str | None = None) -> None:
        """Run `action` once, at the next call of `method` for `instance_uuid` (None: any),
        before the call does anything."""
        with self._lock:
            self._before[(method, instance_uuid)] = action

    def call_after(self, method: str, action: Callable[[], None],
                   instance_uuid: str | None = None) -> None:
        """Run `action` once, when the next call of `method` for `instance_uuid` (None: any)
        has done its work, before it returns (`done`)."""
        with self._lock:
            self._after[(method, instance_uuid)] = action

    def pause_at(self, method: str, directory: str, *, after: bool = False) -> None:
        """At the first call of `method` (once it has done its work, with `after`): create
        `directory`/paused, then wait (polling, at most PAUSE_DEADLINE seconds, else
        DriverError) until `directory`/resume exists."""
        where = "after" if after else "before"

        def barrier() -> None:
            LOG.info("fakevirt: paused %s %s until %s/resume exists", where, method, directory)
            with open(os.path.join(directory, "paused"), "w", encoding="utf-8"):
                pass
            end = time.monotonic() + PAUSE_DEADLINE
            while not os.path.exists(os.path.join(directory, "resume")):
                if time.monotonic() >= end:
                    raise DriverError(f"fakevirt: {method}: no {directory}/resume within "
                                      f"{PAUSE_DEADLINE:g} s")
                time.sleep(0.02)
            LOG.info("fakevirt: resumed %s %s", where, method)
        (self.call_after if after else self.call_before)(method, barrier)

    def pause_from_environment(self, environ: Mapping[str, str]) -> None:
        """Set the barriers FAKEVIRT_PAUSE=METHOD:DIR and FAKEVIRT_PAUSE_AFTER=METHOD:DIR name,
        if any."""
        for name, after in ((PAUSE_ENV, False), (PAUSE_AFTER_ENV, True)):
            value = environ.get(name)
            if value:
                method, sep, directory = value.partition(":")
                if not sep or not method or not directory:
                    raise DriverError(f"{name}={value!r}: expected METHOD:DIRECTORY")
                self.pause_at(method, directory, after=after)

    def clear(self) -> None:
        """Every switch off; a dropped connection is restored (listeners hear it)."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self._before.clear()
            self._after.clear()
        self.restore_connection()

    # -- the driver's side ----------------------------------------------------------------
    def check(self, method: str, instance_uuid: str | None = None) -> None:
        """Called by the driver at the start of `method`: sleeps, then raises if a switch
        says so."""
        with self._lock:
            before = (self._before.pop((method, instance_uuid), None)
                      or self._before.pop((method, None), None)) if self._before else None
            delay = self._delays.get(method)
            disconnected = self._disconnected
            error = (self._failures.get((method, instance_uuid))
                     or self._failures.get((method, None))) if self._failures else None
        if before is not None:
            before()
        if delay:
            self._sleep(delay)
        if disconnected is not None:
            raise DriverError(f"fakevirt: {method}: {disconnected}")
        if error is not None:
            raise error

    def done(self, method: str, instance_uuid: str | None = None) -> None:
        """Called by the driver when `method` has done its work, before it returns: runs the
        action `call_after` set for it, if any."""
        with self._lock:
            after = (self._after.pop((method, instance_uuid), None)
                     or self._after.pop((method, None), None)) if self._after else None
        if after is not None:
            after()
