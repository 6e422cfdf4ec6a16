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


def _row(vm_state, task_state, host="h"):
    from agent.db.compute_queries import InstanceRecord

    return InstanceRecord(1, "u-1", "vm", host, host, vm_state, task_state, 1, 2, 512, 1, 0, 0,
                          None, None, None, None, None, None)


def _never():
    raise AssertionError("the guest must not be read")


@pytest.mark.parametrize("request_, row, ops, working", [
    (rules.OperationRequest("build_and_run_instance", "u-1", image_ref="img"),
     _row(states.BUILDING, states.SCHEDULING), ["spawn"], states.SPAWNING),
    (rules.OperationRequest("stop_instance", "u-1", clean_shutdown=False),
     _row(states.ACTIVE, states.POWERING_OFF), ["power-off"], None),
    (rules.OperationRequest("start_instance", "u-1"), _row(states.STOPPED, states.POWERING_ON),
     ["power-on"], None),
    (rules.OperationRequest("reboot_instance", "u-1", reboot_type="HARD"),
     _row(states.ACTIVE, states.REBOOTING_HARD), ["reboot-hard"], states.REBOOT_STARTED_HARD),
    (rules.OperationRequest("pause_instance", "u-1"), _row(states.ACTIVE, states.PAUSING),
     ["pause"], None),
    (rules.OperationRequest("unpause_instance", "u-1"), _row(states.PAUSED, states.UNPAUSING),
     ["unpause"], None),
    (rules.OperationRequest("terminate_instance", "u-1"), _row(states.ACTIVE, states.DELETING),
     ["destroy"], None),
    (rules.OperationRequest("rebuild_instance", "u-1", image_ref="img"),
     _row(states.ACTIVE, states.REBUILDING), ["rebuild"], states.REBUILD_SPAWNING),
    (rules.OperationRequest("rebuild_instance", "u-1", image_ref="img"),
     _row(states.STOPPED, states.REBUILDING), ["rebuild", "power-off"],
     states.REBUILD_SPAWNING),
    (rules.OperationRequest("rebuild_instance", "u-1", recreate=True),
     _row(states.ACTIVE, states.REBUILDING), ["spawn"], states.REBUILD_SPAWNING),
], ids=["build", "stop", "start", "reboot-hard", "pause", "unpause", "terminate", "rebuild",
        "rebuild-stopped", "rebuild-recreate"])
def test_each_operation_plans_its_driver_steps(request_, row, ops, working):
    from agent.compute.decisions import OnError

    plan = rules.plan_operation(request_, row, "h", _never)
    assert plan.refusal is None and plan.working_task_state == working
    assert [step.op.value for step in plan.plan.steps] == ops
    assert all(step.on_error is OnError.FAIL for step in plan.plan.steps)
    assert plan.reads_power == (request_.method != "terminate_instance")


def test_plan_carries_the_rows_flavor_the_image_and_the_shutdown_kind():
    spawn = rules.plan_operation(
        rules.OperationRequest("build_and_run_instance", "u-1", image_ref="img"),
        _row(states.BUILDING, None), "h", _never).plan.steps[0]
    assert (spawn.image_ref, spawn.flavor.vcpus, spawn.flavor.memory_mb) == ("img", 2, 512)
    stop = rules.plan_operation(rules.OperationRequest("stop_instance", "u-1",
                                                       clean_shutdown=False),
                                _row(states.ACTIVE, states.POWERING_OFF), "h", _never)
    assert stop.plan.steps[0].clean_shutdown is False


@pytest.mark.parametrize("power, op", [(P.RUNNING, "reboot-soft"), (P.SHUTDOWN, "reboot-hard"),
                                       (P.PAUSED, "reboot-hard")])
def test_soft_reboot_of_a_guest_not_running_is_planned_hard(power, op):
    plan = rules.plan_operation(rules.OperationRequest("reboot_instance", "u-1"),
                                _row(states.ACTIVE, states.REBOOTING), "h", lambda: power)
    assert [s.op.value for s in plan.plan.steps] == [op]
    assert plan.working_task_state == states.REBOOT_STARTED  # as requested, SOFT


@pytest.mark.parametrize("row, reason", [
    (None, "no such instance"), (_row(states.ACTIVE, states.REBOOTING, host="other"),
                                 "not this host"),
    (_row(states.ACTIVE, None), "task_state is None")], ids=["gone", "moved", "done"])
def test_refused_plan_reads_no_guest_and_runs_nothing(row, reason):
    plan = rules.plan_operation(rules.OperationRequest("reboot_instance", "u-1"), row, "h",
                                _never)
    assert reason in plan.refusal and plan.plan is None
