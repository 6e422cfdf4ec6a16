"""Periodic jobs (the resource audit, the power-state sync, ...) on an APScheduler 3 scheduler.

Each job runs on a worker thread of its own scheduler, apart from the heartbeat, with
`max_instances=1` (a run that outlasts its interval is never doubled) and `coalesce=True` (runs
missed while the process was stalled collapse into one). Every run gets a new request id. A job
that starts failing is logged in one line, and once more when it recovers (`FailureLog`): during
an outage every run fails the same way, and its traceback goes to DEBUG. The schedule goes on.

APScheduler is imported when the scheduler starts, not when this module is imported, so that the
start-up path up to the first heartbeat stays light.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from agent.failure_log import FailureLog
from agent.log import request_context

LOG = logging.getLogger(__name__)

# Jitter added to every interval, as a fraction of it. Many hosts started by the same
# deployment run would otherwise audit (and hit the shared database) in lockstep, every
# interval, for ever; a few percent spreads them out without changing the cadence noticeably.
JITTER_FRACTION = 0.05

# The spacing nova gives a periodic task whose interval option is 0.
DEFAULT_SPACING = 60.0


@dataclass(frozen=True)
class PeriodicJob:
    """A job to run every `interval_seconds`.

    `name` says what the job does (it is the scheduler's job id and appears in the log).
    `initial_delay` is the delay before the first run; None means one interval. The scheduler
    adds a random delay of up to `periodic_fuzzy_delay` to it.
    """

    name: str
    func: Callable[[], object]
    interval_seconds: float
    initial_delay: float | None = None


def spacing_from_option(value: float, default: float = DEFAULT_SPACING) -> float | None:
    """nova's meaning of a periodic interval option: 0 means `default`, a negative value means
    the job is disabled (None), anything else is the interval in seconds.

    For use where the jobs are built, e.g.
    `spacing_from_option(conf.update_resources_interval)`."""
    if value < 0:
        return None
    return float(default) if value == 0 else float(value)


def jitter_for(interval_seconds: float) -> float:
    """The largest random delay added to each run of a job with this interval."""
    return interval_seconds * JITTER_FRACTION


def first_run_delay(job: PeriodicJob, fuzzy_delay: float, rng: random.Random) -> float:
    """Seconds from the scheduler's start to the job's first run."""
    base = job.interval_seconds if job.initial_delay is None else job.initial_delay
    fuzz = rng.uniform(0, fuzzy_delay) if fuzzy_delay > 0 else 0.0
    return max(0.0, base) + fuzz


def failure_log_for(job: PeriodicJob) -> FailureLog:
    return FailureLog(LOG, f"periodic job {job.name}")


def run_job(job: PeriodicJob, failures: FailureLog) -> None:
    """One run of a job: its own request id; an exception is reported through `failures`
    (the job's FailureLog: one line when it starts failing, one when it recovers)."""
    with request_context():
        LOG.debug("periodic job %s: starting", job.name)
        try:
            job.func()
        except Exception as exc:  # noqa: BLE001 - a failed run must not end the schedule
            failures.failed(exc, f"it runs again in about {_seconds(job.interval_seconds)} s")
        else:
            failures.succeeded()
            LOG.debug("periodic job %s: done", job.name)


class PeriodicScheduler:
    """Runs a fixed set of periodic jobs on a background thread pool.

    Jobs with a negative interval are left out (disabled), with a log line saying so.
    """

    def __init__(self, jobs: Sequence[PeriodicJob], *, fuzzy_delay: float = 0.0,
                 rng: random.Random | None = None,
                 now: Callable[[], dt.datetime] | None = None):
        names = [job.name for job in jobs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"periodic jobs must have unique names: {', '.join(duplicates)}")
        for job in jobs:
            if job.interval_seconds == 0:
                raise ValueError(f"periodic job {job.name}: interval 0; map the option with "
                                 "spacing_from_option() first")
        self._jobs = tuple(job for job in jobs if job.interval_seconds > 0)
        for job in jobs:
            if job.interval_seconds < 0:
                LOG.info("periodic job %s is disabled (interval %s)", job.name,
                         job.interval_seconds)
        self._fuzzy_delay = fuzzy_delay
        self._rng = rng or random.Random()
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self._scheduler = None

    @property
    def jobs(self) -> tuple[PeriodicJob, ...]:
        """The jobs that are scheduled (disabled ones left out)."""
        return self._jobs

    def start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max(1, len(self._jobs)))},
            # misfire_grace_time=None: a run that comes late (a stalled process, a long
            # previous run) still happens, once, rather than being dropped.
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=dt.timezone.utc)
        now = self._now()
        for job in self._jobs:
            delay = first_run_delay(job, self._fuzzy_delay, self._rng)
            scheduler.add_job(run_job, "interval", args=(job, failure_log_for(job)), id=job.name,
                              name=job.name,
                              seconds=job.interval_seconds,
                              jitter=jitter_for(job.interval_seconds),
                              next_run_time=now + dt.timedelta(seconds=delay))
            LOG.info("periodic job %s: every %s s, first run in %.1f s", job.name,
                     _seconds(job.interval_seconds), delay)
        scheduler.start()
        self._scheduler = scheduler

    def is_healthy(self) -> bool:
        """True while the scheduler runs and its thread is alive."""
        scheduler = self._scheduler
        if scheduler is None or not scheduler.running:
            return False
        # BackgroundScheduler keeps its loop thread here; a dead loop runs no job.
        thread = getattr(scheduler, "_thread", None)
        return thread is None or thread.is_alive()

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with `wait`, return once the running jobs have finished."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=wait)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
