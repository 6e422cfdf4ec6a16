"""The _init_instance decision table, row by row (nova-semantics section 4)."""

import pytest

from agent import vocabulary as s
from agent.compute.decisions import (InstanceState, OnError, Op, needs_filtering, plan_instance,
                                     reboot_type, touches_power)
from agent.virt.types import PowerState as P

HOST = "cmp1"


def inst(vm, task=None, power=P.RUNNING, host=HOST, old_vm_state=None):
    return InstanceState(uuid="u-1", name="vm-1", host=host, vm_state=vm, task_state=task,
                         power_state=int(power), old_vm_state=old_vm_state)


def ops(plan):
    return [step.op for step in plan.steps]


# (id, instance, driver power, resume flag, action, pre-changes, ops)
CASES = [
    ("1-other-host", inst(s.ACTIVE, host="elsewhere"), P.RUNNING, False,
     "skipped-other-host", {}, []),
    ("2-soft-deleted", inst(s.SOFT_DELETED), P.SHUTDOWN, False, "skipped", {}, []),
    ("2-error", inst(s.ERROR), P.RUNNING, False, "skipped", {}, []),
    ("2-error-with-task", inst(s.ERROR, s.REBOOTING), P.RUNNING, False, "skipped", {}, []),
    ("3-deleted", inst(s.DELETED), P.RUNNING, False, "deleted", {}, [Op.DESTROY]),
    ("4-building", inst(s.BUILDING), P.NOSTATE, False, "set-error",
     {"vm_state": s.ERROR, "task_state": None}, []),
    ("4-spawning-task", inst(s.ACTIVE, s.SPAWNING), P.RUNNING, False, "set-error",
     {"vm_state": s.ERROR, "task_state": None}, []),
    ("4-networking-task", inst(s.STOPPED, s.NETWORKING), P.SHUTDOWN, False, "set-error",
     {"vm_state": s.ERROR, "task_state": None}, []),
    ("5-rebuilding", inst(s.ACTIVE, s.REBUILDING), P.RUNNING, False, "set-error",
     {"vm_state": s.ERROR, "task_state": None}, []),
    ("5-rebuild-spawning-stopped", inst(s.STOPPED, s.REBUILD_SPAWNING), P.SHUTDOWN, False,
     "set-error", {"vm_state": s.ERROR, "task_state": None}, []),
    ("6-snapshot", inst(s.ACTIVE, s.IMAGE_UPLOADING), P.RUNNING, False, "cleared-task",
     {"task_state": None}, [Op.PLUG_VIFS]),
    ("6-backup-untouched", inst(s.ACTIVE, s.IMAGE_BACKUP), P.RUNNING, False, "none",
     {}, [Op.PLUG_VIFS]),
    ("7-resize-prep", inst(s.STOPPED, s.RESIZE_PREP), P.SHUTDOWN, False, "cleared-task",
     {"task_state": None}, [Op.PLUG_VIFS]),
    ("8-deleting", inst(s.ACTIVE, s.DELETING), P.RUNNING, False, "deleted", {}, [Op.DESTROY]),
    ("8-error-deleting", inst(s.ERROR, s.DELETING), P.SHUTDOWN, False, "deleted", {},
     [Op.DESTROY]),
    ("9-reboot-pending", inst(s.ACTIVE, s.REBOOT_PENDING), P.RUNNING, False, "rebooted-soft",
     {}, [Op.REBOOT_SOFT]),
    ("9-soft-reboot-guest-down", inst(s.ACTIVE, s.REBOOTING), P.SHUTDOWN, False,
     "rebooted-hard", {"task_state": s.REBOOT_PENDING_HARD}, [Op.REBOOT_HARD]),
    ("9-reboot-pending-hard-stopped", inst(s.STOPPED, s.REBOOT_PENDING_HARD), P.SHUTDOWN, False,
     "rebooted-hard", {}, [Op.REBOOT_HARD]),
    ("10-rebooting-done", inst(s.ACTIVE, s.REBOOTING), P.RUNNING, False, "cleared-task",
     {"task_state": None, "vm_state": s.ACTIVE}, [Op.PLUG_VIFS]),
    ("10-pausing-done", inst(s.ACTIVE, s.PAUSING), P.RUNNING, False, "cleared-task",
     {"task_state": None, "vm_state": s.ACTIVE}, [Op.PLUG_VIFS]),
    ("11-unpausing", inst(s.PAUSED, s.UNPAUSING), P.PAUSED, False, "unpaused", {},
     [Op.UNPAUSE]),
    ("12-powering-off", inst(s.ACTIVE, s.POWERING_OFF), P.RUNNING, False, "powered-off", {},
     [Op.POWER_OFF]),
    ("13-powering-on", inst(s.STOPPED, s.POWERING_ON), P.SHUTDOWN, False, "powered-on", {},
     [Op.POWER_ON]),
    ("14-plain-running", inst(s.ACTIVE), P.RUNNING, False, "none", {},
     [Op.PLUG_VIFS]),
    ("14-plain-stopped", inst(s.STOPPED, power=P.SHUTDOWN), P.SHUTDOWN, False, "none", {},
     [Op.PLUG_VIFS]),
    ("15-resize-migrating", inst(s.ACTIVE, s.RESIZE_MIGRATING), P.SHUTDOWN, False,
     "reverted-resize", {}, [Op.PLUG_VIFS, Op.REVERT_RESIZE]),
    ("15-error-resize-migrating", inst(s.ERROR, s.RESIZE_MIGRATING), P.SHUTDOWN, False,
     "reverted-resize", {}, [Op.PLUG_VIFS, Op.REVERT_RESIZE]),
    ("16-migrating", inst(s.ACTIVE, s.MIGRATING), P.RUNNING, False, "aborted-migration", {},
     [Op.PLUG_VIFS, Op.ABORT_MIGRATION]),
    ("17-resume", inst(s.ACTIVE), P.SHUTDOWN, True, "resumed", {},
     [Op.PLUG_VIFS, Op.RESUME]),
    ("17-resume-missing-guest", inst(s.ACTIVE), P.NOSTATE, True, "resumed", {},
     [Op.PLUG_VIFS, Op.RESUME]),
    ("17-no-resume-flag", inst(s.ACTIVE), P.SHUTDOWN, False, "none", {}, [Op.PLUG_VIFS]),
    ("17-was-stopped", inst(s.STOPPED, power=P.SHUTDOWN), P.SHUTDOWN, True, "none", {},
     [Op.PLUG_VIFS]),
    ("other-task-untouched", inst(s.ACTIVE, s.SUSPENDING), P.RUNNING, False, "none", {},
     [Op.PLUG_VIFS]),
]


@pytest.mark.parametrize("instance,power,resume,action,changes,expected_ops",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_instance_follows_the_table(instance, power, resume, action, changes,
                                         expected_ops):
    plan = plan_instance(instance, power, host=HOST, resume_guests=resume)
    assert plan.action == action
    assert dict(plan.changes) == changes
    assert ops(plan) == expected_ops


def test_revert_powers_on_unless_the_guest_was_stopped():
    running = plan_instance(inst(s.ACTIVE, s.RESIZE_MIGRATING, old_vm_state=s.ACTIVE),
                            P.SHUTDOWN, host=HOST, resume_guests=False)
    stopped = plan_instance(inst(s.STOPPED, s.RESIZE_MIGRATING, old_vm_state=s.STOPPED),
                            P.SHUTDOWN, host=HOST, resume_guests=False)
    assert running.steps[-1].power_on is True
    assert stopped.steps[-1].power_on is False
    # The task is cleared whether the revert works or not.
    assert stopped.steps[-1].always == {"task_state": None}


def test_failures_set_error_where_nova_does():
    plug = plan_instance(inst(s.ACTIVE), P.RUNNING, host=HOST, resume_guests=False).steps[0]
    assert plug.on_error is OnError.SET_ERROR
    off = plan_instance(inst(s.ACTIVE, s.POWERING_OFF), P.RUNNING, host=HOST,
                        resume_guests=False).steps[0]
    assert off.on_error is OnError.LOG
    delete = plan_instance(inst(s.ACTIVE, s.DELETING), P.RUNNING, host=HOST,
                           resume_guests=False).steps[0]
    assert delete.on_error is OnError.SET_ERROR
    assert delete.then["deleted"] is True


@pytest.mark.parametrize("task,power,expected", [
    (s.REBOOTING, P.RUNNING, "SOFT"),
    (s.REBOOT_PENDING, P.RUNNING, "SOFT"),
    (s.REBOOTING, P.SHUTDOWN, "HARD"),
    (s.REBOOTING_HARD, P.RUNNING, "HARD"),
    (s.REBOOT_PENDING_HARD, P.PAUSED, "HARD"),
], ids=["soft-running", "soft-pending", "soft-guest-down", "hard-running", "hard-paused"])
def test_reboot_type(task, power, expected):
    assert reboot_type(task, power) == expected


@pytest.mark.parametrize("power,expected", [
    (P.RUNNING, True), (P.PAUSED, True), (P.SUSPENDED, True), (None, True),
    (P.SHUTDOWN, False), (P.CRASHED, False), (P.NOSTATE, False),
], ids=["running", "paused", "suspended", "unknown", "shutdown", "crashed", "missing"])
def test_filtering_follows_the_guest_power_state(power, expected):
    assert needs_filtering(power) is expected


@pytest.mark.parametrize("case", [c for c in CASES], ids=[c[0] for c in CASES])
def test_plans_that_may_change_the_guest_are_read_again(case):
    _id, instance, power, resume, _action, _changes, expected_ops = case
    plan = plan_instance(instance, power, host=HOST, resume_guests=resume)
    # Only plugging VIFs and aborting a migration leave the guest's power state as it was.
    assert touches_power(plan) is bool(set(expected_ops) - {Op.PLUG_VIFS, Op.ABORT_MIGRATION})
