"""The operator's view while the fleet runs: `services list` polled on a connection of its own,
counting every time a live agent (one that has sent its first beat and has not been stopped) is
shown down.

A down is explained when the agent's own beats failed within service_down_time before the poll
(the database was unreachable: the row is stale because the beats could not land, and the
service list is right to say so). Any other down is false: the agent was beating, or should
have been, and the list shows it dead. A correct fleet keeps the false count at 0, whatever
outage it went through.

The poller reads exactly what `agent services list` reads (`list_services`, one statement that
also returns the database's clock) and judges each row with `service_state`, the same verdict.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Collection, Optional

from agent.db.service_queries import list_services
from agent.failure_log import FailureLog
from agent.liveness import state_of
from agent.vocabulary import COMPUTE_BINARY

LOG = logging.getLogger(__name__)

# At most this many false-down lines in the log; the count goes on.
MAX_LOGGED = 20


# explain(host, since): why `host` may rightly be shown down - its beats failed at or after
# `since` (time.monotonic()) - or None.
Explain = Callable[[str, float], Optional[str]]


class ServicesPoller:
    def __init__(self, db, live_hosts: Callable[[], Collection[str]], service_down_time: float,
                 interval: float, *, explain: Explain | None = None,
                 binary: str = COMPUTE_BINARY):
        self._db = db
        self._live_hosts = live_hosts
        self._explain = explain
        self._down_time = float(service_down_time)
        self.interval = float(interval)
        self._binary = binary
        self._failures = FailureLog(LOG, "services poller: listing", level=logging.WARNING)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.errors = 0
        self.false_downs = 0
        self.outage_downs = 0  # downs explained by the agent's own failed beats
        self.max_poll_seconds = 0.0

    def poll(self) -> int:
        """One `services list`: returns how many live agents it shows down without an
        explanation (false downs); explained ones are counted in `outage_downs`. Never
        raises."""
        live = set(self._live_hosts())  # taken first: each of these has beaten already
        started = time.monotonic()
        try:
            with self._db.sessions() as session:
                db_now, rows = list_services(session, binary=self._binary)
        except Exception as exc:  # noqa: BLE001 - counted and logged; the fleet goes on
            self.errors += 1
            self._failures.failed(exc)
            return 0
        self._failures.succeeded()
        self.max_poll_seconds = max(self.max_poll_seconds, time.monotonic() - started)
        self.polls += 1
        # A row shown down has had no beat land for service_down_time: failed beats in that
        # window explain it.
        since = started - self._down_time
        down = 0
        seen = set()
        for row in rows:
            if row.host not in live:
                continue
            seen.add(row.host)
            state = state_of(row, db_now, self._down_time)
            if state.up:
                continue
            why = self._explain(row.host, since) if self._explain is not None else None
            if why is not None:
                self.outage_downs += 1
                LOG.debug("services poller: agent %s shown down (%s): %s", row.host,
                          state.reason, why)
                continue
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
