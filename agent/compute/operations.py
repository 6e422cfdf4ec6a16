"""The instance operations nova's compute RPC asks for, one method each with nova's name and
arguments (the RPC server's endpoint): build_and_run_instance, stop_instance, start_instance,
reboot_instance, pause_instance, unpause_instance, terminate_instance, rebuild_instance.

Each one, under the instance's lock: re-reads the row; does nothing but one warning when the
instance is not on this host or its task_state is not the one the API set (a duplicate or late
message is harmless, `operation_rules.refusal`); records the ``compute_<method>`` event on the
caller's action (request id); calls the driver; brings the firewall in line with the guest
(rules while it is on, none once it is off or gone); saves nova's outcome
(`operation_rules.success_values` / `failure_values`, a fault for a failure). Every write is a
conditional save on the row still being on this host with the states that were read; a lost
save is logged, never forced. A failure is re-raised after it is saved: a call's caller gets
it as a failure reply.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from agent import vocabulary as states
from agent.compute import operation_rules as rules
from agent.compute.instance_locks import InstanceLocks
from agent.compute.instance_network import instance_vifs
from agent.db import action_queries as actions
from agent.db import compute_queries as q
from agent.db.models import utcnow
from agent.errors import InstanceNotFound
from agent.virt.types import VIF, Flavor, InstanceRef, PowerState, RebootType

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
        return self._run(context, "build_and_run_instance", instance,
                         lambda rec, ref: self._spawn(rec, ref, image_ref))

    def stop_instance(self, context, instance, clean_shutdown=True):
        return self._run(context, "stop_instance", instance,
                         lambda rec, ref: self.driver.power_off(ref, bool(clean_shutdown)))

    def start_instance(self, context, instance):
        return self._run(context, "start_instance", instance,
                         lambda rec, ref: self.driver.power_on(ref))

    def reboot_instance(self, context, instance, block_device_info=None, reboot_type="SOFT"):
        kind = RebootType.HARD if reboot_type == "HARD" else RebootType.SOFT
        return self._run(context, "reboot_instance", instance,
                         lambda rec, ref: self._reboot(ref, kind), reboot_type=kind.value)

    def pause_instance(self, context, instance):
        return self._run(context, "pause_instance", instance,
                         lambda rec, ref: self.driver.pause(ref))

    def unpause_instance(self, context, instance):
        return self._run(context, "unpause_instance", instance,
                         lambda rec, ref: self.driver.unpause(ref))

    def terminate_instance(self, context, instance, bdms=None):
        return self._run(context, "terminate_instance", instance,
                         lambda rec, ref: self.driver.destroy(ref, self._vifs(rec)))

    def rebuild_instance(self, context, instance, orig_image_ref=None, image_ref=None,
                         injected_files=None, new_pass=None, orig_sys_metadata=None, bdms=None,
                         recreate=False, on_shared_storage=None, preserve_ephemeral=False,
                         migration=None, scheduled_node=None, limits=None, request_spec=None,
                         accel_uuids=None, reimage_boot_volume=None, target_state=None):
        return self._run(context, "rebuild_instance", instance,
                         lambda rec, ref: self._rebuild(rec, ref, image_ref, bool(recreate)))

    # -- the common path ----------------------------------------------------------------------
    def _run(self, context, method: str, instance: Any,
             act: Callable[[q.InstanceRecord, InstanceRef], None],
             reboot_type: str | None = None) -> None:
        rule = rules.RULES[method]
        uuid = rules.instance_uuid_of(instance)
        with self.locks.lock(uuid):
            rec = self._read(uuid)
            why = rules.refusal(rule, self.host, rec.host if rec else None, rec is not None,
                                rec.vm_state if rec else None, rec.task_state if rec else None)
            if why is not None:
                LOG.warning("%s of instance %s ignored: %s", method, uuid, why)
                return None
            event_id = self._start_event(context, uuid, method)
            ref = InstanceRef(rec.uuid, rec.name)
            expected = rec.task_state
            working = rules.working_task_state(rule, reboot_type)
            LOG.info("instance %s: %s (%s)", uuid, rule.action, method)
            try:
                if working is not None and working != expected:
                    if not self._save(rec, expected, {"task_state": working}):
                        self._finish_event(event_id, None)
                        return None
                    expected = working
                act(rec, ref)
                power = self._power_state(ref, rule)
            except Exception as exc:
                self._failed(rule, rec, ref, expected, event_id, exc)
                raise
            self._follow_firewall(rec, power)
            values = rules.success_values(rule, power, was_vm_state=rec.vm_state, now=utcnow())
            if self._save(rec, expected, values, delete=rule.action == "delete",
                          event_id=event_id):
                LOG.info("instance %s: %s done: vm_state %s, power_state %s", uuid,
                         rule.action, values["vm_state"], PowerState(values["power_state"]).name)
            return None

    def _failed(self, rule, rec, ref, expected, event_id, exc: Exception) -> None:
        try:
            power = self.driver.get_info(ref).power_state
        except Exception:  # noqa: BLE001 - the guest may be gone with the failure
            power = None
        values = rules.failure_values(rule, power)
        LOG.error("instance %s: %s failed: %s; vm_state %s, task_state reverted", rec.uuid,
                  rule.action, exc, values.get("vm_state", rec.vm_state))
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if power is not None and power in states.ACTIVE_POWER_STATES:
            self._follow_firewall(rec, power)
        elif power is None:
            self._follow_firewall(rec, PowerState.NOSTATE)
        self._save(rec, expected, values, event_id=event_id, traceback_text=tb,
                   fault_message=str(exc) or type(exc).__name__)

    # -- the driver ---------------------------------------------------------------------------
    def _spawn(self, rec: q.InstanceRecord, ref: InstanceRef, image_ref: str | None) -> None:
        self.driver.spawn(ref, _flavor(rec), image_ref, self._vifs(rec))

    def _reboot(self, ref: InstanceRef, kind: RebootType) -> None:
        """A SOFT reboot of a guest that is not running is done HARD, as nova's manager."""
        if (kind is RebootType.SOFT
                and self.driver.get_info(ref).power_state != PowerState.RUNNING):
            LOG.info("instance %s is not running: rebooting HARD instead of SOFT", ref.uuid)
            kind = RebootType.HARD
        self.driver.reboot(ref, kind)

    def _rebuild(self, rec, ref, image_ref: str | None, recreate: bool) -> None:
        """nova's rebuild: recreate (evacuation) spawns the guest here; in place, the driver's
        rebuild or destroy then spawn (`_rebuild_default_impl`). A guest that was stopped is
        stopped again."""
        flavor = _flavor(rec)
        vifs = self._vifs(rec)
        if recreate:
            self.driver.spawn(ref, flavor, image_ref, vifs)
        else:
            try:
                self.driver.rebuild(ref, flavor, image_ref, vifs)
            except NotImplementedError:
                self.driver.destroy(ref, vifs, destroy_disks=True)
                self.driver.spawn(ref, flavor, image_ref, vifs)
        if rec.vm_state == states.STOPPED:
            self.driver.power_off(ref, True)

    def _power_state(self, ref: InstanceRef, rule) -> PowerState:
        if rule.action == "delete":
            return PowerState.NOSTATE
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
    def _read(self, uuid: str) -> q.InstanceRecord | None:
        with self.db.sessions() as session:
            return q.load_instance(session, uuid)

    def _save(self, rec: q.InstanceRecord, task_state: str | None, values: dict,
              delete: bool = False, *, event_id: int | None = None,
              traceback_text: str | None = None, fault_message: str | None = None) -> bool:
        """The conditional save of the outcome and, in the SAME transaction, the failure's
        fault and the closing of the operation's event: whoever sees the outcome (a reader of
        the row, `agent server events`, a crash right after) sees the event closed with it."""
        update = q.InstanceUpdate(rec.id, rec.uuid,
                                  {"task_state": task_state, "vm_state": rec.vm_state}, values,
                                  delete=delete)
        with self.db.sessions.begin() as session:
            result = q.save_instances(session, self.host, [update])
            if fault_message is not None:
                actions.add_fault(session, instance_uuid=rec.uuid, code=500,
                                  message=fault_message, details=traceback_text,
                                  host=self.host)
            if event_id is not None:
                _close_event(session, event_id, traceback_text)
        for lost in result.lost:
            LOG.warning("instance %s: outcome not saved, the row changed meanwhile: %s",
                        rec.uuid, lost.describe())
        return rec.id in result.won

    def _start_event(self, context, uuid: str, method: str) -> int | None:
        with self.db.sessions.begin() as session:
            return actions.start_event(session, instance_uuid=uuid,
                                       request_id=context.request_id,
                                       event=f"compute_{method}", host=self.host)

    def _finish_event(self, event_id: int | None, tb: str | None) -> None:
        if event_id is None:
            return
        with self.db.sessions.begin() as session:
            _close_event(session, event_id, tb)


def _close_event(session, event_id: int, tb: str | None) -> None:
    actions.finish_event(session, event_id,
                         result=actions.EVENT_ERROR if tb else actions.EVENT_SUCCESS,
                         traceback=tb)


def _flavor(rec: q.InstanceRecord) -> Flavor:
    """The sizes the instance row was given (its flavor's, copied at create)."""
    return Flavor(vcpus=rec.vcpus, memory_mb=rec.memory_mb, root_gb=rec.root_gb,
                  ephemeral_gb=rec.ephemeral_gb, swap=rec.swap)
