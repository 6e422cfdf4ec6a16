"""Counting the SQL statements the fleet sends, by what each thread was doing (a beat, an audit,
start-up): a `before_cursor_execute` listener on the shared engine and a per-thread label.

Each thread counts into its own dict (no lock on the hot path); totals are summed when asked.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Iterator

from sqlalchemy import event

OTHER = "other"


class StatementCounter:
    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._per_thread: list[dict[str, int]] = []
        self._engine = None

    def attach(self, engine) -> None:
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._before)

    def detach(self) -> None:
        if self._engine is not None:
            event.remove(self._engine, "before_cursor_execute", self._before)
            self._engine = None

    def _counts(self) -> dict[str, int]:
        counts = getattr(self._local, "counts", None)
        if counts is None:
            counts = self._local.counts = {}
            with self._lock:
                self._per_thread.append(counts)
        return counts

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        label = getattr(self._local, "label", OTHER)
        counts = self._counts()
        counts[label] = counts.get(label, 0) + 1

    @contextlib.contextmanager
    def labelled(self, label: str) -> Iterator[None]:
        """Statements sent by this thread inside the block count under `label`."""
        previous = getattr(self._local, "label", OTHER)
        self._local.label = label
        try:
            yield
        finally:
            self._local.label = previous

    def totals(self) -> Counter:
        with self._lock:
            threads = list(self._per_thread)
        total: Counter = Counter()
        for counts in threads:
            total.update(dict(counts))
        return total
