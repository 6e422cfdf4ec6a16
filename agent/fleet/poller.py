"""The operator's view while the fleet runs: `services list` polled on a connection of its own,
counting every time a live agent (one that has sent its first beat and has not been stopped) is
shown down. A correct fleet keeps that count at 0.

The poller reads exactly what `agent services list` reads (`list_services`, one statement that
also returns the database's clock) and judges each row with `service_state`, the same verdict.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Collection

from agent.db.service_queries import list_services
from agent.liveness import state_of
from agent.registry import COMPUTE_BINARY

LOG = logging.getLogger(__name__)

# At most this many false-down lines in the log; the count goes on.
MAX_LOGGED = 20


class ServicesPoller:
    def __init__(self, db, live_hosts: Callable[[], Collection[str]], service_down_time: float,
                 interval: float, *, binary: str = COMPUTE_BINARY):
        self._db = db
        self._live_hosts = live_hosts
        self._down_time = float(service_down_time)
        self.interval = float(interval)
        self._binary = binary
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.errors = 0
        self.false_downs = 0
        self.max_poll_seconds = 0.0

    def poll(self) -> int:
        """One `services list`: returns how many live agents it shows down. Never raises."""
        live = set(self._live_hosts())  # taken first: each of these has beaten already
        started = time.monotonic()
        try:
            db_now, rows = list_services(self._db, binary=self._binary)
        except Exception as exc:  # noqa: BLE001 - counted and logged; the fleet goes on
            self.errors += 1
            LOG.warning("services poller: listing failed: %s", exc)
            return 0
        self.max_poll_seconds = max(self.max_poll_seconds, time.monotonic() - started)
        self.polls += 1
        down = 0
        seen = set()
        for row in rows:
            if row.host not in live:
                continue
            seen.add(row.host)
            state = state_of(row, db_now, self._down_time)
            if not state.up:
                down += 1
                self._report(row.host, state.reason or "down")
        for host in live - seen:
            down += 1
            self._report(host, "missing from the service list")
        self.false_downs += down
        return down

    def _report(self, host: str, reason: str) -> None:
        if self.false_downs < MAX_LOGGED:
            LOG.warning("services poller: live agent %s shown DOWN: %s", host, reason)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="services-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
