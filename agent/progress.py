"""Progress of long work, for the operator watching the log: a line every few seconds while
items are done, instead of one line per item or silence. The caller logs its own summary at
the end.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

# Seconds between two progress lines: often enough that a long run never looks stuck, rarely
# enough that the log stays readable.
PROGRESS_INTERVAL = 5.0


class Progress:
    """Counts items done out of `total`; `advance()` logs '<what>: N of TOTAL <unit> (P %)'
    at INFO when `interval` seconds (of `clock`, monotonic seconds) have passed since the start
    or the last line. No line at all for work that finishes within the first interval."""

    def __init__(self, log: logging.Logger, what: str, total: int, *, unit: str = "instances",
                 interval: float = PROGRESS_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self._log = log
        self.what = what
        self.total = total
        self.unit = unit
        self.interval = interval
        self._clock = clock
        self.started_at = clock()
        self._next_at = self.started_at + interval
        self.done = 0
        self.lines = 0

    def advance(self, count: int = 1) -> float:
        """`count` more items are done (cheap: one clock read). Returns the clock's reading."""
        self.done += count
        now = self._clock()
        if now >= self._next_at:
            self._next_at = now + self.interval
            self.lines += 1
            percent = 100.0 * self.done / self.total if self.total else 100.0
            self._log.info("%s: %s of %s %s (%.0f %%) after %.0f s", self.what,
                           f"{self.done:,}", f"{self.total:,}", self.unit, percent,
                           now - self.started_at)
        return now

    def elapsed(self) -> float:
        """Seconds since the start, by the injected clock."""
        return self._clock() - self.started_at
