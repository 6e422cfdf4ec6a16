"""Domain lifecycle events: translation of libvirt's (event, detail) pairs into nova's
transitions, and the delay of STOPPED events.

A reboot looks, to libvirt, like a stop followed by a start. Delivering the stop at once would
make the power-state sync see a stopped guest and stop it for real, so STOPPED events are held
for `STOPPED_DELAY_S` and dropped when any newer event arrives for the same domain. Every other
event is delivered at once.

`EventDelayer` takes a timer factory (threading.Timer by default) so tests fire held events
themselves instead of waiting.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

from agent.virt.types import LifecycleEvent, Transition

LOG = logging.getLogger(__name__)

# How long a STOPPED event is held so that a reboot's start can cancel it (nova's value).
STOPPED_DELAY_S = 15.0

# libvirt's virDomainEventType values.
EVENT_STARTED = 2
EVENT_SUSPENDED = 3
EVENT_RESUMED = 4
EVENT_STOPPED = 5
EVENT_PMSUSPENDED = 7
# virDomainEventSuspendedDetailType values that change the meaning of a suspend.
SUSPENDED_MIGRATED = 1
SUSPENDED_POSTCOPY = 7


def transition_for(event: int, detail: int,
                   migration_completed: Callable[[], bool] | None = None) -> Transition | None:
    """nova's transition for a libvirt lifecycle event, or None for events nova ignores
    (defined, undefined, shutdown-in-progress, crashed).

    A suspend with the MIGRATED detail is also sent when a live migration fails, so it is a
    completed migration only when `migration_completed()` says the job completed; otherwise the
    guest is simply paused."""
    if event == EVENT_STOPPED:
        return Transition.STOPPED
    if event == EVENT_STARTED:
        return Transition.STARTED
    if event == EVENT_RESUMED:
        return Transition.RESUMED
    if event == EVENT_PMSUSPENDED:
        return Transition.SUSPENDED
    if event == EVENT_SUSPENDED:
        if detail == SUSPENDED_POSTCOPY:
            return Transition.POSTCOPY_STARTED
        if detail == SUSPENDED_MIGRATED and migration_completed is not None \
                and migration_completed():
            return Transition.MIGRATION_COMPLETED
        return Transition.PAUSED
    return None


class Timer(Protocol):
    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], Timer]


def _thread_timer(delay: float, function: Callable[[], None]) -> Timer:
    timer = threading.Timer(delay, function)
    timer.daemon = True
    return timer


class EventDelayer:
    """Delivers lifecycle events to `emit`, holding STOPPED ones for `delay` seconds.

    A newer event for the same domain cancels a held STOPPED event. Thread-safe: `submit` may be
    called from one thread while held events fire from timer threads."""

    def __init__(self, emit: Callable[[LifecycleEvent], None], *,
                 delay: float = STOPPED_DELAY_S, timer_factory: TimerFactory | None = None):
        self._emit = emit
        self._delay = delay
        self._timer_factory = timer_factory or _thread_timer
        self._held: dict[str, Timer] = {}
        self._lock = threading.Lock()

    def submit(self, event: LifecycleEvent) -> None:
        with self._lock:
            held = self._held.pop(event.instance_uuid, None)
            if held is not None:
                held.cancel()
                LOG.debug("Dropped the held STOPPED event of %s: a newer %s event arrived",
                          event.instance_uuid, event.transition.value)
            if event.transition is Transition.STOPPED and self._delay > 0:
                timer = self._timer_factory(self._delay, lambda: self._fire(event, timer))
                self._held[event.instance_uuid] = timer
                timer.start()
                return
        self._emit(event)

    def pending(self) -> list[str]:
        """Uuids of domains whose STOPPED event is being held."""
        with self._lock:
            return list(self._held)

    def cancel_all(self) -> None:
        with self._lock:
            for timer in self._held.values():
                timer.cancel()
            self._held.clear()

    def _fire(self, event: LifecycleEvent, timer: Timer) -> None:
        with self._lock:
            if self._held.get(event.instance_uuid) is not timer:
                return  # cancelled by a newer event after the timer went off
            del self._held[event.instance_uuid]
        self._emit(event)
