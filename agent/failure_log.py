"""A failure that repeats is logged once when it starts and once when it clears.

During an outage (the database stopped, libvirtd gone) every run of every periodic job fails the
same way; a traceback per run buries the one line that matters. `FailureLog` keeps, for one
operation, whether it is failing: the first failure is one line with the reason, a failure of
another kind (another exception type) is one more line, every traceback and every repeat go to
DEBUG, and the first success after failures is one INFO line saying how many runs failed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from agent.config import short_reason


class FailureLog:
    """The failing/recovered state of one operation (`what`, e.g. "periodic job audit"),
    logged on `logger`. `failed(exc, retry)` after each failed run (`retry` says when it runs
    again, e.g. "it runs again in about 60 s"), `succeeded()` after each good one. Thread-safe;
    never raises. `clock` (seconds, monotonic) measures how long it failed."""

    def __init__(self, logger: logging.Logger, what: str, *, level: int = logging.ERROR,
                 clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self.what = what
        self._level = level
        self._clock = clock
        self._lock = threading.Lock()
        self._kind: str | None = None
        self._since: float | None = None
        self.failures = 0  # failed runs since the last success

    @property
    def failing(self) -> bool:
        return self._kind is not None

    def failed(self, exc: BaseException, retry: str = "") -> None:
        kind = type(exc).__name__
        with self._lock:
            first = self._kind is None
            changed = not first and kind != self._kind
            self._kind = kind
            self.failures += 1
            if first:
                self._since = self._clock()
        reason = short_reason(exc)
        if first or changed:
            retry_text = f"; {retry}" if retry else ""
            self._log.log(self._level, "%s %s: %s: %s%s (logged again when it recovers; "
                          "traceback at DEBUG)", self.what,
                          "failing" if first else "now failing differently", kind, reason,
                          retry_text)
            self._log.debug("%s: traceback", self.what, exc_info=exc)
        else:
            self._log.debug("%s still failing (%d failed runs): %s: %s", self.what,
                            self.failures, kind, reason, exc_info=exc)

    def succeeded(self) -> None:
        with self._lock:
            if self._kind is None:
                return
            failures, since = self.failures, self._since
            self._kind, self._since, self.failures = None, None, 0
        self._log.info("%s recovered after %d failed run%s (%.0f s)", self.what, failures,
                       "" if failures == 1 else "s", self._clock() - since)
