"""Lifecycle event translation and the delay of STOPPED events (reboot protection)."""

from __future__ import annotations

import pytest

from agent.virt.libvirt import events
from agent.virt.types import LifecycleEvent, Transition


@pytest.mark.parametrize("event, detail, completed, transition", [
    (events.EVENT_STARTED, 0, None, Transition.STARTED),
    (events.EVENT_STOPPED, 0, None, Transition.STOPPED),
    (events.EVENT_RESUMED, 0, None, Transition.RESUMED),
    (events.EVENT_SUSPENDED, 0, None, Transition.PAUSED),
    (events.EVENT_SUSPENDED, events.SUSPENDED_POSTCOPY, None, Transition.POSTCOPY_STARTED),
    (events.EVENT_SUSPENDED, events.SUSPENDED_MIGRATED, True, Transition.MIGRATION_COMPLETED),
    (events.EVENT_SUSPENDED, events.SUSPENDED_MIGRATED, False, Transition.PAUSED),
    (events.EVENT_PMSUSPENDED, 0, None, Transition.SUSPENDED),
    (0, 0, None, None),  # defined
    (1, 0, None, None),  # undefined
    (6, 0, None, None),  # shutdown in progress
    (8, 0, None, None),  # crashed
], ids=["started", "stopped", "resumed", "paused", "postcopy", "migrated-completed",
        "migrated-failed", "pmsuspended", "defined", "undefined", "shutdown", "crashed"])
def test_transition_for(event, detail, completed, transition):
    check = None if completed is None else (lambda: completed)
    assert events.transition_for(event, detail, check) is transition


class ManualTimer:
    """A timer the test fires itself."""

    def __init__(self, delay, function):
        self.delay = delay
        self.function = function
        self.started = False
        self.cancelled = False

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True

    def fire(self):
        self.function()


@pytest.fixture
def delayer():
    emitted: list[LifecycleEvent] = []
    timers: list[ManualTimer] = []

    def factory(delay, function):
        timer = ManualTimer(delay, function)
        timers.append(timer)
        return timer

    return events.EventDelayer(emitted.append, timer_factory=factory), emitted, timers


def _event(uuid, transition, ts=1.0):
    return LifecycleEvent(uuid, transition, ts)


def test_stopped_event_is_held_fifteen_seconds_then_delivered(delayer):
    delayer, emitted, timers = delayer
    stopped = _event("a", Transition.STOPPED)
    delayer.submit(stopped)
    assert emitted == []
    assert delayer.pending() == ["a"]
    assert timers[0].delay == 15.0 and timers[0].started
    timers[0].fire()
    assert emitted == [stopped]
    assert delayer.pending() == []


def test_newer_event_for_same_domain_cancels_held_stop(delayer):
    delayer, emitted, timers = delayer
    delayer.submit(_event("a", Transition.STOPPED))
    started = _event("a", Transition.STARTED, 2.0)
    delayer.submit(started)
    assert emitted == [started]
    assert timers[0].cancelled
    timers[0].fire()  # a timer that went off while being cancelled delivers nothing
    assert emitted == [started]


def test_event_for_another_domain_does_not_cancel_held_stop(delayer):
    delayer, emitted, timers = delayer
    stopped = _event("a", Transition.STOPPED)
    delayer.submit(stopped)
    other = _event("b", Transition.STARTED)
    delayer.submit(other)
    assert emitted == [other]
    timers[0].fire()
    assert emitted == [other, stopped]


def test_second_stop_replaces_first(delayer):
    delayer, emitted, timers = delayer
    delayer.submit(_event("a", Transition.STOPPED, 1.0))
    second = _event("a", Transition.STOPPED, 2.0)
    delayer.submit(second)
    assert timers[0].cancelled and len(timers) == 2
    timers[0].fire()
    timers[1].fire()
    assert emitted == [second]


def test_non_stop_events_are_delivered_at_once(delayer):
    delayer, emitted, timers = delayer
    sequence = [_event("a", t) for t in (Transition.STARTED, Transition.PAUSED,
                                         Transition.RESUMED, Transition.SUSPENDED)]
    for event in sequence:
        delayer.submit(event)
    assert emitted == sequence
    assert timers == []


def test_cancel_all_drops_held_events(delayer):
    delayer, emitted, timers = delayer
    delayer.submit(_event("a", Transition.STOPPED))
    delayer.submit(_event("b", Transition.STOPPED))
    delayer.cancel_all()
    assert all(t.cancelled for t in timers)
    for timer in timers:
        timer.fire()
    assert emitted == []
