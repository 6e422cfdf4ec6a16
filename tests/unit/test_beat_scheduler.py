"""The fleet's DueScheduler: recurring runs on a small pool, never two runs of a task at once,
a newly added earliest run wakes the sleeping timer, a failing run stays scheduled."""

from __future__ import annotations

import threading
import time

from agent.fleet.beat_scheduler import DueScheduler, Task

# Generous: what is waited for happens in milliseconds; only a bug waits this long.
TIMEOUT = 30.0


def test_an_earlier_run_added_later_wakes_the_sleeping_timer():
    scheduler = DueScheduler("test", workers=1)
    ran = threading.Event()
    scheduler.start()
    try:
        scheduler.add(Task("far", lambda: None, interval=3600), time.monotonic() + 3600)
        time.sleep(0.05)  # the timer is now asleep until the far run
        scheduler.add(Task("now", ran.set, interval=3600), time.monotonic())
        assert ran.wait(TIMEOUT), "the run due now waited for the far one"
    finally:
        scheduler.stop()


def test_runs_recur_and_a_task_never_runs_twice_at_once():
    scheduler = DueScheduler("test", workers=4)
    lock = threading.Lock()
    active = {"a": 0, "b": 0}
    overlaps = []
    done = threading.Event()

    def work(name):
        def run():
            with lock:
                active[name] += 1
                if active[name] > 1:
                    overlaps.append(name)
            time.sleep(0.002)  # longer than the interval: the next run is due at once
            with lock:
                active[name] -= 1
            if a.runs >= 20 and b.runs >= 20:
                done.set()
        return run

    a = Task("a", work("a"), interval=0.001)
    b = Task("b", work("b"), interval=0.001)
    scheduler.start()
    try:
        now = time.monotonic()
        scheduler.add(a, now)
        scheduler.add(b, now)
        assert done.wait(TIMEOUT)
    finally:
        scheduler.stop()
    assert overlaps == []
    assert scheduler.lateness.count >= 40


def test_a_failing_run_is_counted_logged_and_the_task_stays_scheduled(caplog):
    scheduler = DueScheduler("test", workers=1)
    calls = []
    second = threading.Event()

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        second.set()

    task = Task("flaky", flaky, interval=0.001)
    scheduler.start()
    try:
        scheduler.add(task, time.monotonic())
        assert second.wait(TIMEOUT)
    finally:
        scheduler.stop()
    assert task.failures == 1
    assert any("task flaky failed" in r.getMessage() for r in caplog.records)
