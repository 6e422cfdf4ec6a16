"""The pure rules of the RPC instance operations: what each expects, saves and reverts."""

from __future__ import annotations

import threading

import pytest

from agent import vocabulary as states
from agent.compute import operation_rules as rules
from agent.compute.instance_locks import InstanceLocks

P = states.PowerState


@pytest.mark.parametrize("instance", [
    {"nova_object.name": "Instance", "nova_object.data": {"uuid": "u-1"}}, {"uuid": "u-1"},
    "u-1"])
def test_instance_uuid_from_every_form(instance):
    assert rules.instance_uuid_of(instance) == "u-1"


@pytest.mark.parametrize("instance", [None, {}, {"nova_object.data": {}}, 7, "x" * 37])
def test_instance_without_uuid_is_refused(instance):
    with pytest.raises(ValueError, match="no instance uuid"):
        rules.instance_uuid_of(instance)


def test_refusals_name_the_reason():
    stop = rules.RULES["stop_instance"]
    assert rules.refusal(stop, "h", "h", True, "active", "powering-off") is None
    assert "not this host" in rules.refusal(stop, "h", "other", True, "active", "powering-off")
    assert "task_state is None" in rules.refusal(stop, "h", "h", True, "stopped", None)
    assert "no such instance" in rules.refusal(stop, "h", None, False, None, None)
    build = rules.RULES["build_and_run_instance"]
    assert rules.refusal(build, "h", "h", True, "building", None) is None
    assert "vm_state is 'active'" in rules.refusal(build, "h", "h", True, "active",
                                                   "scheduling")


@pytest.mark.parametrize("method, power, vm_state", [
    ("stop_instance", P.SHUTDOWN, "stopped"), ("start_instance", P.RUNNING, "active"),
    ("reboot_instance", P.RUNNING, "active"), ("pause_instance", P.PAUSED, "paused"),
    ("unpause_instance", P.RUNNING, "active"), ("build_and_run_instance", P.RUNNING, "active"),
    ("rebuild_instance", P.RUNNING, "active"), ("terminate_instance", P.NOSTATE, "deleted")])
def test_success_clears_the_task_and_saves_the_power_state(method, power, vm_state):
    values = rules.success_values(rules.RULES[method], power, was_vm_state="active", now="NOW")
    assert (values["vm_state"], values["task_state"], values["power_state"]) == (
        vm_state, None, int(power))


def test_rebuild_of_a_stopped_instance_stays_stopped():
    values = rules.success_values(rules.RULES["rebuild_instance"], P.SHUTDOWN,
                                  was_vm_state="stopped", now="NOW")
    assert values["vm_state"] == "stopped" and values["launched_at"] == "NOW"


@pytest.mark.parametrize("method, power, vm_state", [
    ("stop_instance", P.RUNNING, None), ("pause_instance", P.SHUTDOWN, None),
    ("build_and_run_instance", None, "error"), ("terminate_instance", P.RUNNING, "error"),
    ("rebuild_instance", None, "error"), ("reboot_instance", P.RUNNING, None),
    ("reboot_instance", P.SHUTDOWN, "error")])
def test_failure_reverts_the_task_or_ends_in_error(method, power, vm_state):
    values = rules.failure_values(rules.RULES[method], power)
    assert values["task_state"] is None and values.get("vm_state") == vm_state


def test_instance_locks_serialise_one_uuid_and_are_released():
    locks, inside, overlap = InstanceLocks(), [], []

    def work():
        with locks.lock("u"):
            inside.append(1)
            overlap.append(len(inside))
            threading.Event().wait(0.01)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlap == [1, 1, 1, 1] and len(locks) == 0
