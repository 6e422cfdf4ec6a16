"""A bounded-memory latency histogram: percentiles of millions of samples in a few kB.

Samples are counted in buckets of 1 ms up to 10 s and 100 ms up to 10 min; the maximum is kept
exactly. A percentile is the upper edge of the bucket holding it, so it errs on the late side.
"""

from __future__ import annotations

import threading

_FINE_STEP = 0.001
_FINE_LIMIT = 10.0
_COARSE_STEP = 0.1
_COARSE_LIMIT = 600.0
_FINE_BUCKETS = int(round(_FINE_LIMIT / _FINE_STEP))
_BUCKETS = _FINE_BUCKETS + int(round((_COARSE_LIMIT - _FINE_LIMIT) / _COARSE_STEP)) + 1


def bucket_of(seconds: float) -> int:
    if seconds < 0:
        seconds = 0.0
    if seconds < _FINE_LIMIT:
        return int(seconds / _FINE_STEP)
    index = _FINE_BUCKETS + int((seconds - _FINE_LIMIT) / _COARSE_STEP)
    return min(index, _BUCKETS - 1)


def bucket_upper_edge(index: int) -> float:
    if index < _FINE_BUCKETS:
        return (index + 1) * _FINE_STEP
    return _FINE_LIMIT + (index - _FINE_BUCKETS + 1) * _COARSE_STEP


class LatencyHistogram:
    """Thread-safe: `add` may be called from any worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.max = 0.0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        index = bucket_of(seconds)
        with self._lock:
            self._counts[index] += 1
            self.count += 1
            self.total += seconds
            if seconds > self.max:
                self.max = seconds

    def percentile(self, fraction: float) -> float | None:
        """The value below which `fraction` (0..1) of the samples lie; None without samples.
        Never above the exact maximum."""
        with self._lock:
            if self.count == 0:
                return None
            rank = max(1, int(round(fraction * self.count + 0.4999999)))
            seen = 0
            for index, n in enumerate(self._counts):
                seen += n
                if seen >= rank:
                    return min(bucket_upper_edge(index), self.max)
        return self.max  # pragma: no cover - counts always add up to count
