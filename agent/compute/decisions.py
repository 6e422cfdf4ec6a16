"""What start-up does to each instance: nova's `_init_instance` decision table as pure
functions.

`plan_instance(instance, driver_power, host=..., resume_guests=...)` reads one instance's
database values and the hypervisor's power state and returns a `Plan`: database changes saved
whatever happens next (`changes`), then `steps` run in order through the driver, each with what
to save when it succeeds and what to do when it fails. `ComputeManager` executes plans; nothing
here touches the driver or the database.

Filtering is not a step of any row: it follows the outcome. Whatever path a plan took, the guest's
power state once its steps are done (`power_after`) decides whether the instance gets its
firewall rules (`needs_filtering`): a guest running at the end of start-up is filtered, a
stopped one is not.

The `action` word of a plan (shown in the inventory) is one of:

========================  ===========================================================
skipped-other-host        the database gives the instance to another host
skipped                   soft-deleted, or in ERROR with nothing to finish
deleted                   a partial delete (vm deleted, or task deleting) was completed
set-error                 an interrupted build or rebuild: vm_state error, task cleared
cleared-task              a snapshot/resize_prep task, or a reboot/pause task the guest
                          already finished, was cleared
rebooted-soft / -hard     an interrupted reboot was retried
unpaused                  an interrupted unpause was retried
powered-off / powered-on  an interrupted power-off / power-on was retried
reverted-resize           a resize interrupted in resize_migrating was reverted
aborted-migration         a live migration interrupted here was aborted (migration error)
resumed                   the guest was running before and is restarted
                          (resume_guests_state_on_host_boot)
none                      nothing to do but plug the vifs
evacuated-destroyed       (evacuation, not this module) the guest of an evacuated instance
                          was destroyed
failed                    (manager) a step failed; the instance is set to ERROR when nova
                          would, else left as it was
========================  ===========================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

from agent import vocabulary as states
from agent.virt.types import Flavor, PowerState


@dataclass(frozen=True)
class InstanceState:
    """The database values start-up decides on."""

    uuid: str
    name: str
    host: str | None
    vm_state: str | None
    task_state: str | None
    power_state: int | None
    old_vm_state: str | None = None


class Op(enum.Enum):
    """A driver operation (or a database-only change with a failure policy): start-up's repairs
    and the RPC instance operations (agent.compute.operation_rules) alike."""

    DESTROY = "destroy"
    REBOOT_SOFT = "reboot-soft"
    REBOOT_HARD = "reboot-hard"
    UNPAUSE = "unpause"
    POWER_OFF = "power-off"
    POWER_ON = "power-on"
    PLUG_VIFS = "plug-vifs"
    REVERT_RESIZE = "finish-revert-migration"
    ABORT_MIGRATION = "abort-migration"
    RESUME = "resume-state-on-host-boot"
    SPAWN = "spawn"
    REBUILD = "rebuild"  # the driver's rebuild, else destroy then spawn (nova's default)
    PAUSE = "pause"


# Driver operations that may change the guest's power state (when they succeed or fail half way):
# after one of them, the power state read before the plan is stale.
POWER_OPS = frozenset({Op.DESTROY, Op.REBOOT_SOFT, Op.REBOOT_HARD, Op.UNPAUSE, Op.POWER_OFF,
                       Op.POWER_ON, Op.REVERT_RESIZE, Op.RESUME, Op.SPAWN, Op.REBUILD,
                       Op.PAUSE})
# Guests whose memory is live: they run now, or run again without a start-up of this agent
# (an unpause or resume), so their filtering must already be in place. libvirt's nwfilter, which
# nova used, kept a paused guest's filters on its interfaces for the same reason.
FILTERED_POWER_STATES = frozenset({PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED})


class OnError(enum.Enum):
    LOG = "log"            # log with the uuid, stop this instance
    SET_ERROR = "error"    # vm_state error, stop this instance
    CONTINUE = "continue"  # log with the uuid, go on with the next step
    # Stop, log nothing, hand the error to the caller (an RPC operation records its fault and
    # failure values and answers with it); a driver that cannot do the step fails it too.
    FAIL = "fail"


@dataclass(frozen=True)
class Step:
    op: Op
    on_error: OnError
    # Saved when the step succeeds (columns of `instances`; "deleted" soft-deletes the row).
    then: Mapping[str, object] = field(default_factory=dict)
    # Saved when the step fails, in addition to the on_error policy.
    always: Mapping[str, object] = field(default_factory=dict)
    power_on: bool = True  # REVERT_RESIZE only
    clean_shutdown: bool = True  # POWER_OFF only
    flavor: Flavor | None = None  # SPAWN and REBUILD: the sizes of the instance row
    image_ref: str | None = None  # SPAWN and REBUILD


@dataclass(frozen=True)
class Plan:
    uuid: str
    action: str
    changes: Mapping[str, object] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()


def touches_power(plan: Plan) -> bool:
    """Whether `plan` runs a driver operation that may change the guest's power state, so that
    the power state it was planned on must be read again once its steps are done."""
    return any(step.op in POWER_OPS for step in plan.steps)


def needs_filtering(power: PowerState | None) -> bool:
    """Whether a guest in `power` (None: it could not be read) gets its firewall rules.

    RUNNING, PAUSED and SUSPENDED guests do; SHUTDOWN, CRASHED and missing (NOSTATE) ones do not.
    A guest whose state is unknown does: rules on a guest that is off filter nothing, a running
    guest without its rules takes any traffic."""
    return power is None or power in FILTERED_POWER_STATES


def reboot_type(task_state: str | None, power: PowerState) -> str:
    """HARD when the guest is not running, else SOFT for soft reboot tasks, else HARD."""
    if power != PowerState.RUNNING:
        return "HARD"
    return "SOFT" if task_state in states.SOFT_REBOOT_TASKS else "HARD"


def is_retry_reboot(vm_state: str | None, task_state: str | None, power: PowerState) -> bool:
    if task_state == states.REBOOT_PENDING and vm_state == states.ACTIVE:
        return True
    if (task_state == states.REBOOT_PENDING_HARD
            and vm_state in states.REBOOT_PENDING_HARD_VM_STATES):
        return True
    return task_state in states.REBOOT_IN_FLIGHT_TASKS and power != PowerState.RUNNING


_ERROR_CLEARED = {"vm_state": states.ERROR, "task_state": None}
_ACTIVE_RUNNING = {"vm_state": states.ACTIVE, "task_state": None,
                   "power_state": int(PowerState.RUNNING)}


def plan_instance(inst: InstanceState, driver_power: PowerState, *, host: str,
                  resume_guests: bool) -> Plan:
    """The start-up plan for one instance (reference: nova-semantics section 4, rows 1-17).

    `driver_power` is the hypervisor's uncached view; NOSTATE when the guest is missing."""
    vm, task = inst.vm_state, inst.task_state

    def plan(action: str, changes=None, steps=()) -> Plan:
        return Plan(inst.uuid, action, dict(changes or {}), tuple(steps))

    # 1: another host owns it (the row moved while we were starting).
    if inst.host != host:
        return plan("skipped-other-host")
    # 2: nothing to finish.
    if vm == states.SOFT_DELETED or (
            vm == states.ERROR and task not in (states.RESIZE_MIGRATING, states.DELETING)):
        return plan("skipped")
    # 3: a delete that stopped half way.
    if vm == states.DELETED:
        return plan("deleted", steps=[Step(Op.DESTROY, OnError.LOG,
                                           then={"task_state": None, "deleted": True})])
    # 4, 5: interrupted builds and rebuilds cannot be resumed.
    if vm == states.BUILDING or task in states.BUILD_TASKS:
        return plan("set-error", _ERROR_CLEARED)
    if vm in (states.ACTIVE, states.STOPPED) and task in states.REBUILD_TASKS:
        return plan("set-error", _ERROR_CLEARED)

    changes: dict[str, object] = {}
    action = "none"
    # 6, 7: tasks that are simply abandoned.
    if vm != states.ERROR and (task in states.SNAPSHOT_TASKS or task == states.RESIZE_PREP):
        changes["task_state"] = None
        task = None
        action = "cleared-task"
    # 8: a delete in flight is completed.
    if task == states.DELETING:
        return plan("deleted", changes, [Step(
            Op.DESTROY, OnError.SET_ERROR,
            then={"vm_state": states.DELETED, "task_state": None, "deleted": True})])
    # 9: retry an interrupted reboot.
    if is_retry_reboot(vm, task, driver_power):
        kind = reboot_type(task, driver_power)
        if kind == "HARD" and task in states.SOFT_REBOOT_TASKS:
            changes["task_state"] = states.REBOOT_PENDING_HARD
        op = Op.REBOOT_HARD if kind == "HARD" else Op.REBOOT_SOFT
        return plan(f"rebooted-{kind.lower()}", changes,
                    [Step(op, OnError.SET_ERROR, then=_ACTIVE_RUNNING,
                          always={"task_state": None})])
    # 10: the guest finished what it was doing.
    if driver_power == PowerState.RUNNING and task in states.CLEARED_WHEN_RUNNING_TASKS:
        changes.update({"task_state": None, "vm_state": states.ACTIVE})
        task = None
        action = "cleared-task"
    # 11-13: retry an interrupted unpause, power-off or power-on.
    if driver_power == PowerState.PAUSED and task == states.UNPAUSING:
        return plan("unpaused", changes, [Step(Op.UNPAUSE, OnError.LOG, then=_ACTIVE_RUNNING)])
    if task == states.POWERING_OFF:
        return plan("powered-off", changes, [Step(
            Op.POWER_OFF, OnError.LOG,
            then={"vm_state": states.STOPPED, "task_state": None,
                  "power_state": int(PowerState.SHUTDOWN)})])
    if task == states.POWERING_ON:
        return plan("powered-on", changes, [Step(Op.POWER_ON, OnError.LOG,
                                                 then=_ACTIVE_RUNNING)])
    # 14: host-side plumbing; a plug failure puts the instance in error.
    steps = [Step(Op.PLUG_VIFS, OnError.SET_ERROR)]
    # 15: revert a resize that was moving disks.
    if task == states.RESIZE_MIGRATING:
        steps.append(Step(Op.REVERT_RESIZE, OnError.CONTINUE, then={"task_state": None},
                          always={"task_state": None},
                          power_on=inst.old_vm_state != states.STOPPED))
        action = "reverted-resize"
    # 16: a live migration from here died with us.
    elif task == states.MIGRATING:
        steps.append(Step(Op.ABORT_MIGRATION, OnError.CONTINUE, then={"task_state": None},
                          always={"task_state": None}))
        action = "aborted-migration"
    # 17: bring back guests that were running, when asked to.
    if (resume_guests and inst.power_state == PowerState.RUNNING
            and driver_power != PowerState.RUNNING):
        steps.append(Step(Op.RESUME, OnError.SET_ERROR,
                          then={"power_state": int(PowerState.RUNNING)}))
        return plan("resumed", changes, steps)
    return plan(action, changes, steps)
