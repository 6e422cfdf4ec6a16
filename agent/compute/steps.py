"""The step runner: a `Plan` (agent.compute.decisions) run through the driver, the one runner
for start-up's repairs and for every instance operation.

`DRIVER_CALLS` maps each `Op` to its driver call; `run_steps` runs a plan's steps in order and
returns the instance's values once they are done (`StepsOutcome`), applying each step's `then`
on success and its `always` and `on_error` policy on failure. Ops that change only database rows
(ABORT_MIGRATION) are not driver calls: the caller passes them in `local`. Nothing here reads or
writes the database; the caller saves `StepsOutcome` through the conditional save.
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

# (driver, guest, the step, the instance's VIFs) -> None; raises what the driver raises.
DriverCall = Callable[[ComputeDriver, InstanceRef, Step, Sequence[VIF]], None]

DRIVER_CALLS: Mapping[Op, DriverCall] = {
    Op.DESTROY: lambda d, ref, _s, vifs: d.destroy(ref, vifs, destroy_disks=True),
    Op.REBOOT_SOFT: lambda d, ref, _s, _v: d.reboot(ref, RebootType.SOFT),
    Op.REBOOT_HARD: lambda d, ref, _s, _v: d.reboot(ref, RebootType.HARD),
    Op.UNPAUSE: lambda d, ref, _s, _v: d.unpause(ref),
    Op.POWER_OFF: lambda d, ref, _s, _v: d.power_off(ref, clean_shutdown=True),
    Op.POWER_ON: lambda d, ref, _s, _v: d.power_on(ref),
    Op.PLUG_VIFS: lambda d, ref, _s, vifs: d.plug_vifs(ref, vifs),
    Op.REVERT_RESIZE: lambda d, ref, s, vifs: d.finish_revert_migration(ref, vifs,
                                                                        power_on=s.power_on),
    Op.RESUME: lambda d, ref, _s, vifs: d.resume_state_on_host_boot(ref, vifs),
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


def run_steps(driver: ComputeDriver, ref: InstanceRef, plan: Plan,
              current: Mapping[str, object], vifs: Callable[[], Sequence[VIF] | None], *,
              local: Mapping[Op, Callable[[Step], None]] | None = None) -> StepsOutcome:
    """Run `plan` for the guest `ref`, starting from the row's `current` values (at least
    vm_state, task_state, power_state). `vifs()` gives the instance's VIFs (None: unusable,
    run with none); it is called only when a step needs them. Never raises: a step that fails
    is logged with the uuid and handled by its on_error policy; a driver that cannot do a step
    (NotImplementedError) is logged and the step skipped."""
    values = dict(current)
    values.update(plan.changes)
    deleted = False
    local = local or {}
    for step in plan.steps:
        try:
            if step.op in local:
                local[step.op](step)
            else:
                # Per instance at DEBUG: start-up logs progress and a summary of every action.
                LOG.debug("instance %s: %s", ref.uuid, step.op.value)
                DRIVER_CALLS[step.op](driver, ref, step, vifs() or ())
        except NotImplementedError:
            LOG.warning("instance %s: the driver cannot %s", ref.uuid, step.op.value)
            continue
        except Exception as exc:  # noqa: BLE001 - recorded, logged with the uuid
            values.update(step.always)
            if step.on_error is OnError.CONTINUE:
                LOG.error("instance %s: %s failed: %s (going on)", ref.uuid, step.op.value, exc)
                continue
            if step.on_error is OnError.SET_ERROR:
                values["vm_state"] = states.ERROR
            LOG.error("instance %s: %s failed: %s%s", ref.uuid, step.op.value, exc,
                      "; instance set to ERROR" if step.on_error is OnError.SET_ERROR else "")
            return StepsOutcome(values, deleted, "failed", f"{step.op.value}: {exc}")
        then = dict(step.then)
        deleted = bool(then.pop("deleted", False)) or deleted
        values.update(then)
    return StepsOutcome(values, deleted, plan.action)
