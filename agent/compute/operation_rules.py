"""What each instance operation sent over the compute RPC expects, does and saves, as nova's
ComputeManager does: pure decisions, no I/O (agent.compute.operations does the I/O).

`plan_operation(request, row, host, guest_power)` gives an `OperationPlan`: why the message is
ignored (`refusal`), or the task_state saved before the driver works, and the driver steps as a
`decisions.Plan` of `Step`s with `Op`s, run by the one step runner (agent.compute.steps, the
table from `Op` to the driver call that start-up uses too). `success_values` and
`failure_values` give what is saved once the steps are done, from the guest's power state then.

| method | task_state the API set | while the driver works | saved on success |
|---|---|---|---|
| build_and_run_instance | scheduling or none | spawning | active, running, launched_at |
| stop_instance | powering-off | | stopped |
| start_instance | powering-on | | active |
| reboot_instance | a reboot task (1) | reboot_started(_hard) | active |
| pause_instance | pausing | | paused |
| unpause_instance | unpausing | | active |
| terminate_instance | deleting | | deleted, nostate, terminated_at, row soft-deleted |
| rebuild_instance | rebuilding | rebuild_spawning | active (stopped when it was stopped) |

(1) rebooting, reboot_pending or reboot_started, or the same with _hard.

Every success clears the task_state and saves the guest's power state as the driver reports it.
A failure records an instance fault and: a build, a rebuild or a terminate end in ERROR (nova's
`_set_instance_obj_error_state`); a reboot ends in ERROR unless the guest still runs; the others
only revert the task_state to none (nova's `reverts_task_state`), vm_state unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from agent import vocabulary as states
from agent.compute.decisions import OnError, Op, Plan, Step
from agent.virt.types import Flavor, PowerState


# The driver steps of one method: from the request, the row as re-read (an InstanceRecord) and
# the guest's power state (called only where the steps depend on it), each `OnError.FAIL`.
StepsOf = Callable[["OperationRequest", Any, Callable[[], PowerState]], tuple[Step, ...]]


@dataclass(frozen=True)
class OperationRule:
    """One method's rule: the states it runs from, its driver steps, what it saves."""

    action: str  # nova's instance action name ('stop'), for the log
    expected_task_states: tuple[str | None, ...]
    success_vm_state: str
    steps: StepsOf
    working_task_state: str | None = None  # saved before the driver call
    expected_vm_states: tuple[str, ...] | None = None  # None: any
    failure_to_error: bool = False
    reads_power: bool = True  # the guest's power state is read after the steps


def _flavor(row: Any) -> Flavor:
    return Flavor(vcpus=row.vcpus, memory_mb=row.memory_mb, root_gb=row.root_gb,
                  ephemeral_gb=row.ephemeral_gb, swap=row.swap)


def _one(op: Op) -> StepsOf:
    """The steps of a method that makes one driver call with no arguments."""
    return lambda request, row, guest_power: (Step(op, OnError.FAIL),)


def _spawn(request: "OperationRequest", row: Any, guest_power) -> tuple[Step, ...]:
    return (Step(Op.SPAWN, OnError.FAIL, flavor=_flavor(row), image_ref=request.image_ref),)


def _power_off(request: "OperationRequest", row: Any, guest_power) -> tuple[Step, ...]:
    return (Step(Op.POWER_OFF, OnError.FAIL, clean_shutdown=request.clean_shutdown),)


def _reboot(request: "OperationRequest", row: Any, guest_power) -> tuple[Step, ...]:
    """A guest that is not running is rebooted HARD whatever was asked, as nova's manager
    does."""
    hard = request.reboot_type == "HARD" or guest_power() != PowerState.RUNNING
    return (Step(Op.REBOOT_HARD if hard else Op.REBOOT_SOFT, OnError.FAIL),)


def _rebuild(request: "OperationRequest", row: Any, guest_power) -> tuple[Step, ...]:
    """Recreate (an evacuation) spawns the guest here; a stopped guest stops again."""
    op = Op.SPAWN if request.recreate else Op.REBUILD
    steps = (Step(op, OnError.FAIL, flavor=_flavor(row), image_ref=request.image_ref),)
    if row.vm_state == states.STOPPED:
        steps += (Step(Op.POWER_OFF, OnError.FAIL),)
    return steps


REBOOT_TASK_STATES = (states.REBOOTING, states.REBOOT_PENDING, states.REBOOT_STARTED,
                      states.REBOOTING_HARD, states.REBOOT_PENDING_HARD,
                      states.REBOOT_STARTED_HARD)

RULES: Mapping[str, OperationRule] = {
    "build_and_run_instance": OperationRule(
        "create", (states.SCHEDULING, None), states.ACTIVE, _spawn, states.SPAWNING,
        expected_vm_states=(states.BUILDING,), failure_to_error=True),
    "stop_instance": OperationRule("stop", (states.POWERING_OFF,), states.STOPPED, _power_off),
    "start_instance": OperationRule("start", (states.POWERING_ON,), states.ACTIVE,
                                    _one(Op.POWER_ON)),
    "reboot_instance": OperationRule("reboot", REBOOT_TASK_STATES, states.ACTIVE, _reboot),
    "pause_instance": OperationRule("pause", (states.PAUSING,), states.PAUSED, _one(Op.PAUSE)),
    "unpause_instance": OperationRule("unpause", (states.UNPAUSING,), states.ACTIVE,
                                      _one(Op.UNPAUSE)),
    # The guest is gone after a delete: its power state is NOSTATE, not read.
    "terminate_instance": OperationRule("delete", (states.DELETING,), states.DELETED,
                                        _one(Op.DESTROY), failure_to_error=True,
                                        reads_power=False),
    "rebuild_instance": OperationRule("rebuild", (states.REBUILDING,), states.ACTIVE, _rebuild,
                                      states.REBUILD_SPAWNING, failure_to_error=True),
}


@dataclass(frozen=True)
class OperationRequest:
    """One operation as the message asked for it (nova's arguments that change what is done)."""

    method: str  # a key of RULES
    uuid: str
    clean_shutdown: bool = True  # stop_instance
    reboot_type: str = "SOFT"  # reboot_instance: 'SOFT' or 'HARD'
    image_ref: str | None = None  # build_and_run_instance, rebuild_instance
    recreate: bool = False  # rebuild_instance: an evacuation's spawn on this host

    @property
    def rule(self) -> OperationRule:
        return RULES[self.method]


@dataclass(frozen=True)
class OperationPlan:
    """What to do with the row as read: nothing but one warning (`refusal` set), else save
    `working_task_state` first (when not None and not already the row's), then run `plan`
    (its steps, each `OnError.FAIL`: the first failure ends it). `reads_power` says whether the
    guest's power state is read once the steps are done (not for a delete: the guest is gone,
    NOSTATE)."""

    request: OperationRequest
    refusal: str | None = None
    working_task_state: str | None = None
    plan: Plan | None = None
    reads_power: bool = True


def plan_operation(request: OperationRequest, row: Any, host: str,
                   guest_power: Callable[[], PowerState]) -> OperationPlan:
    """The plan for `request` on `row` (the instance as re-read under its lock: an
    InstanceRecord, or None when there is no live row). `guest_power()` is called only for a
    SOFT reboot that is not refused: a guest that is not running is rebooted HARD instead, as
    nova's manager does (the working task_state still follows the requested type). The
    accepted states and the steps are `RULES[request.method]`'s."""
    rule = request.rule
    why = refusal(rule, host, row.host if row else None, row is not None,
                  row.vm_state if row else None, row.task_state if row else None)
    if why is not None:
        return OperationPlan(request, refusal=why)
    steps = rule.steps(request, row, guest_power)
    return OperationPlan(request, None, working_task_state(rule, request.reboot_type),
                         Plan(request.uuid, rule.action, {}, steps),
                         reads_power=rule.reads_power)


def instance_uuid_of(instance: Any) -> str:
    """The uuid of the `instance` argument: nova's serialised Instance object
    (``{"nova_object.data": {"uuid": ...}}``), a plain ``{"uuid": ...}`` or the uuid itself.
    ValueError when there is none."""
    if isinstance(instance, Mapping):
        data = instance.get("nova_object.data", instance)
        uuid = data.get("uuid") if isinstance(data, Mapping) else None
    else:
        uuid = instance
    if not isinstance(uuid, str) or not uuid or len(uuid) > 36:
        raise ValueError("argument 'instance' carries no instance uuid")
    return uuid


def refusal(rule: OperationRule, host: str, row_host: str | None, found: bool,
            vm_state: str | None, task_state: str | None) -> str | None:
    """Why the operation must not run on the row as read (None: run it). A duplicate or late
    message finds the task_state cleared or changed and is ignored."""
    if not found:
        return "no such instance (deleted?)"
    if row_host != host:
        return f"the instance is on host {row_host!r}, not this host ({host!r})"
    if task_state not in rule.expected_task_states:
        wanted = " or ".join(str(s) for s in rule.expected_task_states)
        return f"task_state is {task_state!r}, expected {wanted} (done already, or changed)"
    if rule.expected_vm_states is not None and vm_state not in rule.expected_vm_states:
        return f"vm_state is {vm_state!r}, expected {' or '.join(rule.expected_vm_states)}"
    return None


def working_task_state(rule: OperationRule, reboot_type: str | None) -> str | None:
    """The task_state saved before the driver call, if any (a reboot's 'started' state
    follows its type)."""
    if rule.action == "reboot":
        return states.REBOOT_STARTED_HARD if reboot_type == "HARD" else states.REBOOT_STARTED
    return rule.working_task_state


def success_values(rule: OperationRule, power_state: int, *, was_vm_state: str | None,
                   now: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"vm_state": rule.success_vm_state, "task_state": None,
                              "power_state": int(power_state)}
    if rule.action in ("create", "rebuild"):
        values["launched_at"] = now
    if rule.action == "rebuild" and was_vm_state == states.STOPPED:
        values["vm_state"] = states.STOPPED
    if rule.action == "delete":
        values.update(power_state=int(states.PowerState.NOSTATE), terminated_at=now)
    return values


def failure_values(rule: OperationRule, power_state: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {"task_state": None}
    running = power_state == states.PowerState.RUNNING
    if rule.failure_to_error or (rule.action == "reboot" and not running):
        values["vm_state"] = states.ERROR
    if power_state is not None:
        values["power_state"] = int(power_state)
    return values
