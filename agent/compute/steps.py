"""The step runner: a `Plan` (agent.compute.decisions) run through the driver, the one runner
for start-up's repairs (agent.compute.manager) and for every RPC instance operation
(agent.compute.operations, planned by agent.compute.operation_rules).

`DRIVER_CALLS` is the one table from `Op` to its driver call; `run_steps` runs a plan's steps
in order and returns the instance's values once they are done (`StepsOutcome`), applying each
step's `then` on success and its `always` and `on_error` policy on failure. Ops that change
only database rows (ABORT_MIGRATION) are not driver calls: the caller passes them in `local`.
Nothing here reads or writes the database; the caller saves `StepsOutcome` through the
conditional save.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from agent import vocabulary as states
from agent.compute.decisions import OnError, Op, Plan, Step
from agent.virt.driver import ComputeDriver
from agent.virt.types import VIF, InstanceRef, RebootType

LOG = logging.getLogger(__name__)

# (driver, guest, the step, the instance's VIFs when called) -> None; raises what the driver
# raises. The VIFs are read (their network_info parsed) only by the calls that take them.
DriverCall = Callable[[ComputeDriver, InstanceRef, Step, Callable[[], Sequence[VIF]]], None]


def _rebuild(d: ComputeDriver, ref: InstanceRef, step: Step, vifs: Sequence[VIF]) -> None:
    """nova's rebuild in place: the driver's own, else destroy then spawn
    (`_rebuild_default_impl`)."""
    try:
        d.rebuild(ref, step.flavor, step.image_ref, vifs)
    except NotImplementedError:
        d.destroy(ref, vifs, destroy_disks=True)
        d.spawn(ref, step.flavor, step.image_ref, vifs)


DRIVER_CALLS: Mapping[Op, DriverCall] = {
    Op.DESTROY: lambda d, ref, _s, vifs: d.destroy(ref, vifs(), destroy_disks=True),
    Op.REBOOT_SOFT: lambda d, ref, _s, _v: d.reboot(ref, RebootType.SOFT),
    Op.REBOOT_HARD: lambda d, ref, _s, _v: d.reboot(ref, RebootType.HARD),
    Op.UNPAUSE: lambda d, ref, _s, _v: d.unpause(ref),
    Op.POWER_OFF: lambda d, ref, s, _v: d.power_off(ref, clean_shutdown=s.clean_shutdown),
    Op.POWER_ON: lambda d, ref, _s, _v: d.power_on(ref),
    Op.PLUG_VIFS: lambda d, ref, _s, vifs: d.plug_vifs(ref, vifs()),
    Op.REVERT_RESIZE: lambda d, ref, s, vifs: d.finish_revert_migration(ref, vifs(),
                                                                        power_on=s.power_on),
    Op.RESUME: lambda d, ref, _s, vifs: d.resume_state_on_host_boot(ref, vifs()),
    Op.SPAWN: lambda d, ref, s, vifs: d.spawn(ref, s.flavor, s.image_ref, vifs()),
    Op.REBUILD: lambda d, ref, s, vifs: _rebuild(d, ref, s, vifs()),
    Op.PAUSE: lambda d, ref, _s, _v: d.pause(ref),
}


@dataclass(frozen=True)
class StepsOutcome:
    """An instance after its plan ran: the values to save (vm_state, task_state, power_state
    and any other column a step set), whether the row is to be soft-deleted, and the plan's
    action word, or 'failed' with the error."""

    values: Mapping[str, object]
    deleted: bool
    action: str
    error: str | None = None
    exception: Exception | None = None  # the failed step's error (with its traceback)


def run_steps(driver: ComputeDriver, ref: InstanceRef, plan: Plan,
              current: Mapping[str, object], vifs: Callable[[], Sequence[VIF] | None], *,
              local: Mapping[Op, Callable[[Step], None]] | None = None) -> StepsOutcome:
    """Run `plan` for the guest `ref`, starting from the row's `current` values (at least
    vm_state, task_state, power_state). `vifs()` gives the instance's VIFs (None: unusable,
    run with none); it is called only when a step needs them. Never raises: a step that fails
    is logged with the uuid and handled by its on_error policy (FAIL: not logged, the error
    returned in `exception` for the caller to report); a driver that cannot do a step
    (NotImplementedError) is logged and the step skipped, except under FAIL where that is the
    step's failure."""
    values = dict(current)
    values.update(plan.changes)
    deleted = False
    local = local or {}

    def step_vifs() -> Sequence[VIF]:
        return vifs() or ()

    for step in plan.steps:
        try:
            if step.op in local:
                local[step.op](step)
            else:
                # Per instance at DEBUG: start-up logs progress and a summary of every action.
                LOG.debug("instance %s: %s", ref.uuid, step.op.value)
                DRIVER_CALLS[step.op](driver, ref, step, step_vifs)
        except Exception as exc:  # noqa: BLE001 - recorded, logged with the uuid
            if step.on_error is OnError.FAIL:
                values.update(step.always)
                return StepsOutcome(values, deleted, "failed", f"{step.op.value}: {exc}", exc)
            if isinstance(exc, NotImplementedError):
                LOG.warning("instance %s: the driver cannot %s", ref.uuid, step.op.value)
                continue
            values.update(step.always)
            if step.on_error is OnError.CONTINUE:
                LOG.error("instance %s: %s failed: %s (going on)", ref.uuid, step.op.value, exc)
                continue
            if step.on_error is OnError.SET_ERROR:
                values["vm_state"] = states.ERROR
            LOG.error("instance %s: %s failed: %s%s", ref.uuid, step.op.value, exc,
                      "; instance set to ERROR" if step.on_error is OnError.SET_ERROR else "")
            return StepsOutcome(values, deleted, "failed", f"{step.op.value}: {exc}", exc)
        then = dict(step.then)
        deleted = bool(then.pop("deleted", False)) or deleted
        values.update(then)
    return StepsOutcome(values, deleted, plan.action)
