"""The per-instance lock registry: one operation at a time per instance, none waiting for
another instance's, and no lock kept once nobody holds it."""

from __future__ import annotations

import threading
import time

from agent.compute.instance_locks import InstanceLocks

DEADLINE_S = 30.0
A, B = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:.0f} s: {what}"
        time.sleep(0.01)


def test_a_second_operation_on_an_instance_waits_for_the_first():
    locks = InstanceLocks()
    order: list[str] = []
    second_done = threading.Event()

    def second() -> None:
        with locks.lock(A):
            order.append("second runs")
        second_done.set()

    with locks.lock(A):
        thread = threading.Thread(target=second)
        thread.start()
        wait_until(lambda: locks.holders(A) == 2, "the second operation waits for the lock")
        order.append("first ends")
    assert second_done.wait(DEADLINE_S)
    thread.join(DEADLINE_S)
    assert order == ["first ends", "second runs"]


def test_operations_on_other_instances_do_not_wait():
    locks = InstanceLocks()
    other_done = threading.Event()

    def other() -> None:
        with locks.lock(B):
            pass
        other_done.set()

    with locks.lock(A):
        threading.Thread(target=other).start()
        assert other_done.wait(DEADLINE_S), "an operation on B waited for A's lock"
        assert locks.holders(A) == 1


def test_nothing_is_kept_once_nobody_holds_a_lock():
    locks = InstanceLocks()
    with locks.lock(A):
        with locks.lock(B):
            assert len(locks) == 2
    assert len(locks) == 0 and locks.holders(A) == 0
