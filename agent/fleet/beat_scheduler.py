"""One timer thread, a heap of due runs, a small worker pool: many recurring tasks (a fleet's
heartbeats, or its periodic audits) without a thread per task.

The timer thread sleeps until the earliest due time, hands every due run to the pool and goes
back to sleep. A worker records the run's lateness (its actual start minus its due time: timer
wake-up, queueing behind other runs and the GIL all show up in it), runs it, and puts the task
back on the heap at `due + interval` (plus jitter). A run that overran its interval is followed
by the next one at once, without a burst of catch-up runs; a task is never run twice at once.

`next_due` is the pure decision; `DueScheduler` does the threading.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
import queue
from dataclasses import dataclass
from typing import Callable

from agent.fleet.latency import LatencyHistogram

LOG = logging.getLogger(__name__)

# Weight of the newest run in `recent_lateness` (an exponential moving average).
RECENT_WEIGHT = 0.02


def next_due(due: float, interval: float, finished: float, jitter: float = 0.0) -> float:
    """When a task that was due at `due` runs next, given that this run finished at `finished`:
    one interval (plus `jitter`) after its due time, or at once if that is already past."""
    return max(due + interval + jitter, finished)


@dataclass
class Task:
    """A recurring task. `func` is called with no argument; its return value is ignored and
    its exceptions are logged (the task stays scheduled)."""

    name: str
    func: Callable[[], object]
    interval: float
    jitter: float = 0.0  # each run is moved by a random amount in [-jitter, +jitter]
    runs: int = 0
    failures: int = 0
    cancelled: bool = False


class DueScheduler:
    """See the module docstring. `clock` must be monotonic (seconds)."""

    def __init__(self, name: str, workers: int, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        if workers < 1:
            raise ValueError(f"{name}: workers must be at least 1, not {workers}")
        self.name = name
        self.workers = workers
        self._clock = clock
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Due runs on their way to the workers; None tells a worker to stop. A SimpleQueue and
        # plain threads rather than a ThreadPoolExecutor: no Future and no locks per run, which
        # shows at a thousand runs a second.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self.lateness = LatencyHistogram()
        # Lateness is also kept apart from a moment on (e.g. once every agent has started).
        self.steady_lateness = LatencyHistogram()
        self._steady_from: float | None = None
        self.overruns = 0
        # Moving average of the lateness of the latest runs: how far behind the pool is now.
        self.recent_lateness = 0.0

    def add(self, task: Task, first_due: float) -> None:
        """Schedule `task`; its first run is due at `first_due` (on the scheduler's clock)."""
        with self._cond:
            heapq.heappush(self._heap, (first_due, next(self._seq), task))
            if self._heap[0][2] is task:  # the timer sleeps until the earliest run: wake it
                self._cond.notify()

    def mark_steady(self) -> None:
        """From now on, lateness is also recorded in `steady_lateness`."""
        self._steady_from = self._clock()

    def start(self) -> None:
        for index in range(self.workers):
            worker = threading.Thread(target=self._run_worker, name=f"{self.name}-worker-{index}",
                                      daemon=True)
            worker.start()
            self._workers.append(worker)
        self._thread = threading.Thread(target=self._run_timer, name=f"{self.name}-timer",
                                        daemon=True)
        self._thread.start()

    def _run_timer(self) -> None:
        while True:
            due_runs = []
            with self._cond:
                while not self._stopping:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - self._clock()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._stopping:
                    return
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    due, _, task = heapq.heappop(self._heap)
                    if not task.cancelled:
                        due_runs.append((due, task))
            for run in due_runs:
                self._queue.put(run)

    def _run_worker(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                return
            if not self._stopping:  # runs still queued at stop() are dropped
                self._run_task(*run)

    def _run_task(self, due: float, task: Task) -> None:
        started = self._clock()
        late = started - due
        self.lateness.add(late)
        self.recent_lateness += RECENT_WEIGHT * (late - self.recent_lateness)
        steady_from = self._steady_from
        if steady_from is not None and due >= steady_from:
            self.steady_lateness.add(late)
        try:
            task.func()
        except Exception:  # noqa: BLE001 - one failing run never ends the schedule
            task.failures += 1
            LOG.exception("%s: task %s failed; it runs again in %g s", self.name, task.name,
                          task.interval)
        task.runs += 1
        finished = self._clock()
        if finished > due + task.interval:
            self.overruns += 1
        jitter = self._rng.uniform(-task.jitter, task.jitter) if task.jitter else 0.0
        if not task.cancelled:
            self.add(task, next_due(due, task.interval, finished, jitter))

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self, wait: bool = True) -> None:
        """No new run starts; with `wait`, returns once the runs in progress have finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        for _ in self._workers:
            self._queue.put(None)
        if wait:
            for worker in self._workers:
                worker.join()
