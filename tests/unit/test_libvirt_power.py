"""Waiting on a guest's own shutdown (agent.virt.libvirt.power), on an injected clock.

The guest is a small scripted stand-in for a libvirt domain: how long it takes to go off after
being asked, or whether it ever does, is what a real QEMU guest without an OS cannot vary (the
QEMU tier covers the guest that never goes off), and a libvirt error in the middle is a fault
that cannot be produced on demand.
"""

from __future__ import annotations

import logging

import pytest

from agent.virt.libvirt.power import ShutdownWaiter
from tests.conftest import import_libvirt

libvirt = import_libvirt()

UUID = "11111111-2222-3333-4444-555555555555"


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Guest:
    """Off `off_after` seconds after shutdown() (None: never); `restarted_by_other` starts it
    again under a new domain id as soon as it is off; `shutdown_error` makes shutdown() fail."""

    def __init__(self, clock: Clock, off_after: float | None, *, shutdown_error: bool = False,
                 restarted_by_other: bool = False):
        self.clock, self.off_after = clock, off_after
        self.shutdown_error, self.restarted_by_other = shutdown_error, restarted_by_other
        self.asked_at: float | None = None
        self.id, self.creates, self._looks = 7, 0, 0

    def ID(self) -> int:  # noqa: N802 - libvirt's name
        return self.id

    def shutdown(self) -> None:
        if self.shutdown_error:
            raise libvirt.libvirtError("internal error: the monitor went away")
        self.asked_at = self.clock.now

    def isActive(self) -> bool:  # noqa: N802 - libvirt's name
        off = (self.asked_at is not None and self.off_after is not None
               and self.clock.now - self.asked_at >= self.off_after)
        if off and self.restarted_by_other:
            self._looks += 1
            if self._looks > 1:  # seen off once, then someone started it again
                self.id = 8
                return True
        return not off

    def create(self) -> None:
        self.creates += 1
        self.asked_at, self.id = None, 9


@pytest.fixture
def clock():
    return Clock()


def waiter(clock: Clock) -> ShutdownWaiter:
    return ShutdownWaiter(poll_interval=0.5, sleep=clock.sleep, monotonic=clock.monotonic)


def test_soft_reboot_starts_the_guest_again_once_it_is_off(clock, caplog):
    guest = Guest(clock, off_after=3)
    with caplog.at_level(logging.WARNING):
        assert waiter(clock).soft_reboot(guest, UUID, timeout=120) is True
    assert guest.creates == 1
    assert 3 <= clock.now < 120
    assert caplog.records == []


def test_soft_reboot_of_a_guest_that_stays_on_gives_up_after_the_timeout(clock, caplog):
    guest = Guest(clock, off_after=None)
    with caplog.at_level(logging.WARNING):
        assert waiter(clock).soft_reboot(guest, UUID, timeout=5) is False
    assert guest.creates == 0  # the caller reboots it hard
    assert clock.now >= 5
    assert [r.getMessage() for r in caplog.records] == [
        f"Instance {UUID} did not shut down within 5 s (wait_soft_reboot_seconds)"]


def test_soft_reboot_with_a_libvirt_error_falls_back(clock):
    guest = Guest(clock, off_after=1, shutdown_error=True)
    assert waiter(clock).soft_reboot(guest, UUID, timeout=120) is False
    assert guest.creates == 0


def test_soft_reboot_leaves_a_guest_someone_else_started_again(clock):
    guest = Guest(clock, off_after=1, restarted_by_other=True)
    assert waiter(clock).soft_reboot(guest, UUID, timeout=120) is True
    assert (guest.creates, guest.id) == (0, 8)


@pytest.mark.parametrize("off_after, timeout, result", [
    (0, 0, True), (2, 10, True), (None, 10, False), (None, 0, False)],
    ids=["already-going-off", "off-in-time", "stays-on", "no-wait"])
def test_shutdown_and_wait(clock, off_after, timeout, result):
    guest = Guest(clock, off_after)
    assert waiter(clock).shutdown_and_wait(guest, UUID, timeout, "shutdown_timeout") is result
    assert clock.now <= max(timeout, 0) + 0.5
