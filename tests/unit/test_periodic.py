"""Periodic jobs on the real APScheduler background scheduler, with short intervals."""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest

from agent.log import current_request_id
from agent.periodic import (JITTER_FRACTION, PeriodicJob, PeriodicScheduler, first_run_delay,
                             jitter_for, spacing_from_option)

DEADLINE = 20.0  # generous: the machine is shared


def wait_for(condition, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def running():
    schedulers = []

    def start(jobs, **kwargs):
        scheduler = PeriodicScheduler(jobs, **kwargs)
        scheduler.start()
        schedulers.append(scheduler)
        return scheduler

    yield start
    for scheduler in schedulers:
        scheduler.shutdown(wait=True)


@pytest.mark.parametrize(("value", "expected"), [(0, 60.0), (-1, None), (-5, None), (30, 30.0),
                                                 (600, 600.0)],
                         ids=["zero-default", "minus-one", "negative", "thirty", "six-hundred"])
def test_spacing_from_option(value, expected):
    assert spacing_from_option(value) == expected


def test_jitter_is_a_small_fraction_of_the_interval():
    assert jitter_for(60) == pytest.approx(60 * JITTER_FRACTION)
    assert 0 < JITTER_FRACTION <= 0.1


@pytest.mark.parametrize(("initial_delay", "fuzzy", "low", "high"), [
    (None, 0, 30, 30), (None, 60, 30, 90), (0, 0, 0, 0), (5, 10, 5, 15)],
    ids=["one-interval", "interval-plus-fuzz", "immediate", "delay-plus-fuzz"])
def test_first_run_delay(initial_delay, fuzzy, low, high):
    job = PeriodicJob("audit", lambda: None, 30, initial_delay)
    rng = random.Random(7)
    delays = [first_run_delay(job, fuzzy, rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    if fuzzy:
        assert len(set(delays)) > 1  # hosts do not all pick the same delay


def test_jobs_run_repeatedly_each_with_its_own_request_id(running):
    ids: list[str] = []
    scheduler = running([PeriodicJob("update_available_resource",
                                     lambda: ids.append(current_request_id()), 0.2, 0)])
    assert wait_for(lambda: len(ids) >= 3)
    assert all(rid.startswith("req-") for rid in ids)
    assert len(set(ids)) == len(ids)
    assert [job.name for job in scheduler.jobs] == ["update_available_resource"]


def test_a_failing_job_is_logged_once_and_runs_again(running, caplog):
    caplog.set_level(logging.INFO, logger="agent.periodic")
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("audit exploded")

    scheduler = running([PeriodicJob("audit", broken, 0.1, 0)])
    assert wait_for(lambda: len(calls) >= 4)
    lines = [r for r in caplog.records if r.name == "agent.periodic"
             and "periodic job audit" in r.getMessage() and "every" not in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR and lines[0].exc_info is None
    assert ("periodic job audit failing: RuntimeError: audit exploded; it runs again in about "
            "0.1 s") in lines[0].getMessage()
    assert "Traceback" not in caplog.text
    assert scheduler.is_healthy()


def test_an_outage_is_one_line_when_it_starts_and_one_when_it_clears(running, caplog):
    caplog.set_level(logging.INFO, logger="agent.periodic")
    outage = threading.Event()
    outage.set()
    runs = {"failed": 0, "ok": 0}

    def audit():
        if outage.is_set():
            runs["failed"] += 1
            raise ConnectionError("database unreachable")
        runs["ok"] += 1

    running([PeriodicJob("update_available_resource", audit, 0.1, 0),
             PeriodicJob("sync_power_states", audit, 0.1, 0)])
    assert wait_for(lambda: runs["failed"] >= 10)
    outage.clear()
    assert wait_for(lambda: runs["ok"] >= 6)

    lines = [r.getMessage() for r in caplog.records if r.name == "agent.periodic"
             and r.levelno >= logging.INFO and "periodic job" in r.getMessage()
             and "every" not in r.getMessage()]
    for job in ("update_available_resource", "sync_power_states"):
        mine = [line for line in lines if f"periodic job {job} " in line]
        assert len(mine) == 2, lines
        assert "failing: ConnectionError: database unreachable" in mine[0]
        assert "recovered after" in mine[1]


def test_the_traceback_is_at_debug(running, caplog):
    caplog.set_level(logging.DEBUG, logger="agent.periodic")
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("audit exploded")

    running([PeriodicJob("audit", broken, 0.1, 0)])
    assert wait_for(lambda: len(calls) >= 3)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert tracebacks and all(r.levelno == logging.DEBUG for r in tracebacks)


def test_a_slow_job_never_runs_twice_at_once(running):
    active = 0
    peak = 0
    runs = 0
    lock = threading.Lock()

    def slow():
        nonlocal active, peak, runs
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.5)  # five intervals long
        with lock:
            active -= 1
            runs += 1

    running([PeriodicJob("sync_power_states", slow, 0.1, 0)])
    assert wait_for(lambda: runs >= 2)
    assert peak == 1


def test_negative_interval_leaves_the_job_out(running, caplog):
    caplog.set_level(logging.INFO, logger="agent.periodic")
    ran, audits = [], []
    scheduler = running([PeriodicJob("sync_power_states", lambda: ran.append(1), -1, 0),
                         PeriodicJob("audit", lambda: audits.append(1), 0.1, 0)])
    assert [job.name for job in scheduler.jobs] == ["audit"]
    assert "sync_power_states is disabled" in caplog.text
    # the scheduler has gone round several times (the audit ran), the disabled job never did
    assert wait_for(lambda: len(audits) >= 3)
    assert ran == []


@pytest.mark.parametrize("jobs", [
    [PeriodicJob("audit", lambda: None, 0)],
    [PeriodicJob("audit", lambda: None, 1), PeriodicJob("audit", lambda: None, 2)]],
    ids=["zero-interval", "duplicate-name"])
def test_invalid_job_sets_are_refused(jobs):
    with pytest.raises(ValueError):
        PeriodicScheduler(jobs)


def test_health_follows_the_scheduler_state():
    scheduler = PeriodicScheduler([PeriodicJob("audit", lambda: None, 60)])
    assert not scheduler.is_healthy()
    scheduler.start()
    assert scheduler.is_healthy()
    scheduler.shutdown(wait=True)
    assert not scheduler.is_healthy()


def test_shutdown_waits_for_the_running_job():
    started = threading.Event()
    finished = threading.Event()

    def job():
        started.set()
        time.sleep(0.5)
        finished.set()

    scheduler = PeriodicScheduler([PeriodicJob("audit", job, 60, 0)])
    scheduler.start()
    assert started.wait(DEADLINE)
    scheduler.shutdown(wait=True)
    assert finished.is_set()
