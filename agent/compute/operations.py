"""The instance operations nova's compute RPC asks for, one method each with nova's name and
arguments (the RPC server's endpoint): build_and_run_instance, stop_instance, start_instance,
reboot_instance, pause_instance, unpause_instance, terminate_instance, rebuild_instance.

Each one, under the instance's lock: re-reads the row (one statement, with the database's clock,
which starts the operation's event); plans it (`operation_rules.plan_operation`, pure: a
duplicate or late message, or one for another host's instance, is ignored with one warning);
saves the working task_state when nova saves one before the driver works (build, reboot,
rebuild), with the ``compute_<method>`` event opened in the same transaction so that a long
driver call shows it; runs the plan's steps through the one step runner (agent.compute.steps);
brings the firewall in line with the guest (rules while it is on, none once it is off or gone);
then saves nova's outcome (`operation_rules.success_values` / `failure_values`, a fault for a
failure) and the event with its result in ONE transaction. Every write is a conditional save on
the row still being on this host with the states that were read; a lost save is logged, never
forced. A failure is re-raised after it is saved: a call's caller gets it as a failure reply.

Statements per operation (SQLite; the functional test counts them): a stop, start, pause,
unpause or terminate 3 (the read, the outcome's UPDATE, the event's INSERT ... SELECT) in one
write transaction; a build, reboot or rebuild 5 in two.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Any

from agent import vocabulary as states
from agent.compute import operation_rules as rules
from agent.compute.decisions import Op
from agent.compute.instance_locks import InstanceLocks
from agent.compute.instance_network import instance_vifs
from agent.compute.operation_rules import OperationRequest
from agent.compute.steps import run_steps
from agent.db import action_queries as actions
from agent.db import compute_queries as q
from agent.db.models import utcnow
from agent.errors import InstanceNotFound
from agent.virt.types import VIF, InstanceRef, PowerState

LOG = logging.getLogger(__name__)

METHODS = tuple(rules.RULES)


class InstanceOperations:
    """The RPC endpoint of one host: `db`, `driver` and `firewall` as the manager's."""

    def __init__(self, db, driver, firewall, host: str, locks: InstanceLocks | None = None):
        self.db, self.driver, self.firewall, self.host = db, driver, firewall, host
        self.locks = locks or InstanceLocks()

    # -- the RPC methods (nova's ComputeAPI 6.x arguments) ------------------------------------
    def build_and_run_instance(self, context, instance, image=None, request_spec=None,
                               filter_properties=None, accel_uuids=None, admin_password=None,
                               injected_files=None, requested_networks=None,
                               security_groups=None, block_device_mapping=None, node=None,
                               limits=None, host_list=None):
        image_ref = image.get("id") if isinstance(image, dict) else None
        return self._run(context, OperationRequest("build_and_run_instance", _uuid(instance),
                                                   image_ref=image_ref))

    def stop_instance(self, context, instance, clean_shutdown=True):
        return self._run(context, OperationRequest("stop_instance", _uuid(instance),
                                                   clean_shutdown=bool(clean_shutdown)))

    def start_instance(self, context, instance):
        return self._run(context, OperationRequest("start_instance", _uuid(instance)))

    def reboot_instance(self, context, instance, block_device_info=None, reboot_type="SOFT"):
        return self._run(context, OperationRequest(
            "reboot_instance", _uuid(instance),
            reboot_type="HARD" if reboot_type == "HARD" else "SOFT"))

    def pause_instance(self, context, instance):
        return self._run(context, OperationRequest("pause_instance", _uuid(instance)))

    def unpause_instance(self, context, instance):
        return self._run(context, OperationRequest("unpause_instance", _uuid(instance)))

    def terminate_instance(self, context, instance, bdms=None):
        return self._run(context, OperationRequest("terminate_instance", _uuid(instance)))

    def rebuild_instance(self, context, instance, orig_image_ref=None, image_ref=None,
                         injected_files=None, new_pass=None, orig_sys_metadata=None, bdms=None,
                         recreate=False, on_shared_storage=None, preserve_ephemeral=False,
                         migration=None, scheduled_node=None, limits=None, request_spec=None,
                         accel_uuids=None, reimage_boot_volume=None, target_state=None):
        return self._run(context, OperationRequest("rebuild_instance", _uuid(instance),
                                                   image_ref=image_ref,
                                                   recreate=bool(recreate)))

    # -- the common path: lock, re-read, plan, run, save ---------------------------------------
    def _run(self, context, request: OperationRequest) -> None:
        method, uuid = request.method, request.uuid
        with self.locks.lock(uuid):
            with self.db.sessions() as session:
                rec, started_at = q.load_instance_at(session, uuid)
            ref = InstanceRef(uuid, rec.name if rec is not None else uuid)
            event = _Event(context.request_id, f"compute_{method}", started_at)
            try:
                op = rules.plan_operation(request, rec, self.host,
                                          lambda: self.driver.get_info(ref).power_state)
            except Exception as exc:  # a SOFT reboot's read of its guest failed
                self._failed(request.rule, rec, ref, rec.task_state, event, exc)
                raise
            if op.refusal is not None:
                LOG.warning("%s of instance %s ignored: %s", method, uuid, op.refusal)
                return None
            action = op.plan.action
            LOG.info("instance %s: %s (%s)", uuid, action, method)
            if request.reboot_type == "SOFT" and op.plan.steps[0].op is Op.REBOOT_HARD:
                LOG.info("instance %s is not running: rebooting HARD instead of SOFT", uuid)
            expected = rec.task_state
            try:
                working = op.working_task_state
                if working is not None and working != expected:
                    if not self._save_working(rec, expected, working, event):
                        return None
                    expected, event.opened = working, True
                done = run_steps(self.driver, ref, op.plan, {}, lambda: self._vifs(rec))
                if done.exception is not None:
                    raise done.exception
                power = self._power_state(ref) if op.reads_power else PowerState.NOSTATE
            except Exception as exc:
                self._failed(request.rule, rec, ref, expected, event, exc)
                raise
            self._follow_firewall(rec, power)
            values = rules.success_values(op.request.rule, power, was_vm_state=rec.vm_state,
                                          now=utcnow())
            if self._save(rec, expected, values, event, delete=action == "delete"):
                LOG.info("instance %s: %s done: vm_state %s, power_state %s", uuid, action,
                         values["vm_state"], _power_name(values["power_state"]))
            return None

    def _failed(self, rule: rules.OperationRule, rec, ref, expected, event: "_Event",
                exc: Exception) -> None:
        try:
            power = self.driver.get_info(ref).power_state
        except Exception:  # noqa: BLE001 - the guest may be gone with the failure
            power = None
        values = rules.failure_values(rule, power)
        LOG.error("instance %s: %s failed: %s; vm_state %s, task_state reverted", rec.uuid,
                  rule.action, exc, values.get("vm_state", rec.vm_state))
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        # The rules follow the guest as it is after the failure: kept while it runs, removed
        # once it is off or gone.
        self._follow_firewall(rec, PowerState.NOSTATE if power is None else power)
        self._save(rec, expected, values, event, traceback_text=tb,
                   fault_message=str(exc) or type(exc).__name__)

    # -- the driver ---------------------------------------------------------------------------
    def _power_state(self, ref: InstanceRef) -> PowerState:
        try:
            return self.driver.get_info(ref).power_state
        except InstanceNotFound:
            return PowerState.NOSTATE

    def _vifs(self, rec: q.InstanceRecord) -> tuple[VIF, ...]:
        """The guest's VIFs; none (the error logged, as start-up logs it) when its
        network_info cannot be read."""
        return instance_vifs(rec.uuid, rec.network_info, log=LOG) or ()

    def _follow_firewall(self, rec: q.InstanceRecord, power: int) -> None:
        """Rules while the guest is on, none once it is off or gone (as start-up does)."""
        try:
            if power in states.ACTIVE_POWER_STATES:
                self.firewall.prepare_from_network_info(rec.uuid, rec.name, rec.network_info)
            else:
                self.firewall.remove_instance(rec.uuid)
            self.firewall.apply()
        except Exception as exc:  # noqa: BLE001 - the outcome is still saved
            LOG.error("instance %s: firewall rules not updated: %s", rec.uuid, exc)

    # -- the database -------------------------------------------------------------------------
    def _save_working(self, rec: q.InstanceRecord, expected: str | None, working: str,
                      event: "_Event") -> bool:
        """The task_state nova saves before the driver works, with the event opened in the
        same transaction (seen while the driver works). A lost save runs nothing: the event is
        then recorded finished, as the operation ends there."""
        update = q.InstanceUpdate(rec.id, rec.uuid,
                                  {"task_state": expected, "vm_state": rec.vm_state},
                                  {"task_state": working})
        with self.db.sessions.begin() as session:
            result = q.save_instance(session, self.host, update)
            won = rec.id in result.won
            if won:
                actions.open_event(session, instance_uuid=rec.uuid,
                                   request_id=event.request_id, event=event.name,
                                   host=self.host)
            else:
                self._write_event(session, rec.uuid, event, None)
        self._log_lost(rec, result)
        return won

    def _save(self, rec: q.InstanceRecord, task_state: str | None, values: dict,
              event: "_Event", delete: bool = False, *, traceback_text: str | None = None,
              fault_message: str | None = None) -> bool:
        """The conditional save of the outcome and, in the SAME transaction, the failure's
        fault and the operation's event with its result: whoever sees the outcome (a reader of
        the row, `agent server events`, a crash right after) sees the event finished with
        it."""
        update = q.InstanceUpdate(rec.id, rec.uuid,
                                  {"task_state": task_state, "vm_state": rec.vm_state}, values,
                                  delete=delete)
        with self.db.sessions.begin() as session:
            result = q.save_instance(session, self.host, update)
            if fault_message is not None:
                actions.add_fault(session, instance_uuid=rec.uuid, code=500,
                                  message=fault_message, details=traceback_text,
                                  host=self.host)
            self._write_event(session, rec.uuid, event, traceback_text)
        self._log_lost(rec, result)
        return rec.id in result.won

    def _write_event(self, session, uuid: str, event: "_Event", tb: str | None) -> None:
        result = actions.EVENT_ERROR if tb else actions.EVENT_SUCCESS
        if event.opened:
            actions.close_event(session, instance_uuid=uuid, request_id=event.request_id,
                                event=event.name, result=result, traceback=tb)
        else:
            actions.record_event(session, instance_uuid=uuid, request_id=event.request_id,
                                 event=event.name, host=self.host,
                                 start_time=event.started_at, result=result, traceback=tb)

    @staticmethod
    def _log_lost(rec: q.InstanceRecord, result) -> None:
        for lost in result.lost:
            LOG.warning("instance %s: outcome not saved, the row changed meanwhile: %s",
                        rec.uuid, lost.describe())


class _Event:
    """The operation's ``compute_<method>`` event on the caller's action (request id): started
    at the re-read (database clock); `opened` once written unfinished."""

    __slots__ = ("request_id", "name", "started_at", "opened")

    def __init__(self, request_id: str, name: str, started_at: dt.datetime | None):
        self.request_id, self.name, self.started_at = request_id, name, started_at
        self.opened = False


def _uuid(instance: Any) -> str:
    return rules.instance_uuid_of(instance)


def _power_name(power: int) -> str:
    try:
        return PowerState(power).name
    except ValueError:
        return str(power)
