"""ComputeManager: start-up of this host's instances (init_host) and their power states.

`init_host` follows DESIGN.md step 5: this host's instances in one query (plus one for guests
found here that the database gives to another host), the firewall deferred, lifecycle events
held, every instance planned by `decisions.plan_instance` (reads only), ownership re-read in
bulk, evacuated guests destroyed, the plans of instances still on this host as they were read
executed through the driver, one firewall apply, then every database change written by one
conditional save (agent/db/conditional_save.py): a row another host or an operation changed
meanwhile is neither acted on nor written, and its outcome is `lost-race`, logged with what
changed. One failing instance never stops the others.

The firewall follows the outcome, not the path: once an instance's steps are done, its guest's
power state (read again when a step may have changed it) decides whether it gets its rules
(`decisions.needs_filtering`); the one apply then holds the rules of exactly those instances,
and drops every other chain of ours.

In a dry run, plans are logged and reported and nothing is changed: no driver mutation, no
firewall change, no database write.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple, Sequence

from agent import vocabulary as states
from agent.compute.decisions import (InstanceState, OnError, Op, Plan, Step, needs_filtering,
                                     plan_instance, touches_power)
from agent.compute.evacuation import (EvacuationOutcome, destroy_evacuated, plan_evacuations)
from agent.compute.instance_network import instance_vifs
from agent.compute.ownership import (LOST_RACE, OwnershipCheck, save_start_up,
                                     still_evacuated)
from agent.compute.power_sync import PowerStateSync
from agent.db import compute_queries as q
from agent.db.conditional_save import LostSave, log_lost
from agent.display import plural
from agent.errors import FirewallError, InstanceNotFound
from agent.progress import Progress
from agent.virt.driver import ComputeDriver
from agent.virt.types import VIF, InstanceInfo, InstanceRef, PowerState, RebootType

LOG = logging.getLogger(__name__)



@dataclass(frozen=True)
class InstanceOutcome:
    """One instance after start-up, as the inventory shows it."""

    uuid: str
    name: str
    vm_state: str | None
    task_state: str | None
    power_state: int | None
    action: str
    error: str | None = None


@dataclass(frozen=True)
class UnknownDomain:
    """A guest on the hypervisor that no live instance row knows."""

    uuid: str
    name: str
    power_state: int


@dataclass(frozen=True)
class InitHostResult:
    instances: tuple[InstanceOutcome, ...]
    evacuated: tuple[EvacuationOutcome, ...]
    unknown_domains: tuple[UnknownDomain, ...]
    dry_run: bool = False


class _Planned(NamedTuple):
    """One instance planned, not yet acted on (see `ComputeManager._plan_instance`)."""

    rec: q.InstanceRecord
    ref: InstanceRef
    plan: Plan | None  # None: its guest could not be read (`power` is the error)
    vifs: Callable[[], tuple[VIF, ...] | None]
    power: PowerState | Exception


class _Started(NamedTuple):
    """One instance after its plan ran (see `ComputeManager._run_plan`)."""

    outcome: InstanceOutcome
    update: q.InstanceUpdate | None
    migration_statuses: dict[int, str]
    power_after: PowerState | None  # the guest once its steps are done; None: unknown
    vifs: Callable[[], tuple[VIF, ...] | None]


class ComputeManager:
    """Start-up and power-state work for one host, through one driver and one firewall."""

    def __init__(self, conf, db, driver: ComputeDriver, firewall, *, host: str | None = None,
                 dry_run: bool = False, clock: Callable[[], float] = time.monotonic):
        self.conf = conf
        # Monotonic seconds: init_host's progress lines and its re-reads of ownership.
        self._clock = clock
        self.db = db
        self.driver = driver
        self.firewall = firewall
        self.host = host or conf.host
        self.dry_run = dry_run
        self.power_sync = PowerStateSync(db, driver, self.host, dry_run=dry_run,
                                         on_change=self._follow_guests)

    # -- init_host ----------------------------------------------------------------------------
    def init_host(self) -> InitHostResult:
        """Run start-up for every instance of this host. Call only after the node identity was
        checked (evacuated guests are destroyed here)."""
        started_at = self._clock()
        guests = {g.uuid: g for g in self.driver.list_instances()}
        with self.db.sessions() as session:
            instances = q.load_host_instances(session, self.host)
            known = {r.uuid for r in instances}
            others = q.load_instances_by_uuid(session, [u for u in guests if u not in known])
            migrations = q.load_host_migrations(session, self.host)
        records = instances + others
        LOG.info("init_host: %s of host %s, %s on the hypervisor, %s",
                 plural(len(instances), "instance"), self.host, plural(len(guests), "guest"),
                 plural(len(migrations), "open migration"))

        self._init_virt_events()
        evac_outcomes: list[EvacuationOutcome] = []
        migration_statuses: dict[int, str] = {}
        outcomes: list[InstanceOutcome] = []
        updates: list[q.InstanceUpdate] = []
        by_uuid = {r.uuid: r for r in records}
        firewall_error: FirewallError | None = None
        try:
            self._start_instances(records, guests, migrations, by_uuid, evac_outcomes,
                                  migration_statuses, outcomes, updates)
        except FirewallError as exc:
            # The driver work is done: save it before reporting the failed apply.
            firewall_error = exc
        if not self.dry_run and (updates or migration_statuses):
            outcomes = save_start_up(self.db, self.host, updates, migration_statuses,
                                     migrations, outcomes)
        if not self.dry_run:
            self.power_sync.release()
        unknown = tuple(UnknownDomain(g.uuid, g.name, int(g.power_state))
                        for g in guests.values() if g.uuid not in by_uuid)
        if unknown:
            LOG.warning("%s on the hypervisor %s no instance in the database (left alone): %s",
                        plural(len(unknown), "guest"), "has" if len(unknown) == 1 else "have",
                        ", ".join(f"{d.name} ({d.uuid})" for d in unknown[:10])
                        + (" ..." if len(unknown) > 10 else ""))
        self._log_summary(outcomes, evac_outcomes, self._clock() - started_at)
        if firewall_error is not None:
            raise firewall_error
        return InitHostResult(tuple(outcomes), tuple(evac_outcomes), unknown, self.dry_run)

    def _start_instances(self, records, guests, migrations, by_uuid, evac_outcomes,
                         migration_statuses, outcomes, updates) -> None:
        """Inside one firewall deferral (one apply at the end, holding the rules of exactly the
        instances of this host whose guest needs filtering once its steps are done): every
        instance planned (reads only), ownership re-read in bulk, evacuated guests destroyed,
        then each plan run only where the row is still this host's as it was read
        (ownership.OwnershipCheck). Fills the lists and dicts it is given."""
        with self.firewall.defer_apply():
            plans: list = []
            if self.driver.capabilities.supports_evacuate:
                plans = plan_evacuations(migrations, self.host,
                                         {u: g.name for u, g in guests.items()},
                                         self.conf.compute.shared_storage)
            evacuated = {p.instance_uuid for p in plans}
            planned: list[_Planned] = []
            for rec in records:
                if rec.uuid not in evacuated:
                    planned.append(self._plan_instance(rec, guests.get(rec.uuid)))
            progress = Progress(LOG, "init_host", len(planned), clock=self._clock)
            check = OwnershipCheck(self.db, self.host,
                                   [p.rec.uuid for p in planned if self._acts(p)],
                                   progress.started_at)
            if plans:
                evac, statuses = destroy_evacuated(
                    self.driver, still_evacuated(plans, check.owners, self.host),
                    dry_run=self.dry_run,
                    network_info=lambda uuid: self._vifs(by_uuid.get(uuid), quiet=True) or ())
                evac_outcomes.extend(evac)
                migration_statuses.update(statuses)
            filtered: list[str] = []
            lost: list[LostSave] = []
            for item in planned:
                now = progress.advance()
                rec = item.rec
                if self._acts(item):
                    race = check.lost(rec, now)
                    if race is not None:
                        lost.append(race)
                        outcomes.append(InstanceOutcome(rec.uuid, item.ref.name, rec.vm_state,
                                                        rec.task_state, rec.power_state,
                                                        LOST_RACE, race.describe()))
                        continue
                started = self._run_plan(item, migrations)
                outcome = started.outcome
                if (rec.host == self.host and outcome.action != "skipped-other-host"
                        and needs_filtering(started.power_after)):
                    filtered.append(rec.uuid)
                    outcome = self._filter_instance(rec, outcome, started.vifs)
                outcomes.append(outcome)
                if started.update is not None:
                    updates.append(started.update)
                migration_statuses.update(started.migration_statuses)
            log_lost(LOG, lost, "init_host (guest left alone)", self.host)
            if not self.dry_run:
                self.firewall.retain_only(filtered)

    def _acts(self, item: _Planned) -> bool:
        """Whether the plan changes the guest or the row of an instance of this host."""
        return (item.rec.host == self.host and item.plan is not None
                and bool(item.plan.steps or item.plan.changes))

    def _filter_instance(self, rec: q.InstanceRecord, outcome: InstanceOutcome,
                         vifs: Callable[[], tuple[VIF, ...] | None]) -> InstanceOutcome:
        """(Re)build the rules of an instance whose guest needs filtering. A failure is logged
        with the uuid and shown in the outcome; the instance's previous rules stay."""
        if self.dry_run:
            return outcome
        try:
            self._prepare_rules(rec.uuid, outcome.name, vifs())
        except Exception as exc:  # noqa: BLE001 - one instance never stops the others
            LOG.error("instance %s: firewall rules not prepared: %s", rec.uuid, exc)
            return replace(outcome, action="failed", error=f"firewall: {exc}")
        return outcome

    def _prepare_rules(self, uuid: str, name: str, vifs: tuple[VIF, ...] | None) -> None:
        if vifs is None:  # an invalid network_info (logged): its rules stay as they are
            self.firewall.keep_instance(uuid)
        else:
            self.firewall.prepare_instance(uuid, name, vifs)

    def _follow_guests(self, guests: Sequence[tuple[q.InstanceRecord, PowerState]]) -> None:
        """The power sync's report, before it saves, of instances whose guest is not in the
        recorded state (a lifecycle event or the periodic sync): a guest that runs now, started
        or resumed after start-up, gets its rules, in one apply. A guest that stopped keeps
        them (rules on a stopped guest filter nothing). Failures are logged, never raised."""
        wanted = [rec for rec, power in guests if needs_filtering(power)]
        if not wanted:
            return
        try:
            with self.firewall.defer_apply():
                for rec in wanted:
                    try:
                        self._prepare_rules(rec.uuid, rec.name, self._vifs(rec))
                    except ValueError as exc:
                        LOG.error("instance %s: firewall rules not prepared: %s", rec.uuid, exc)
        except Exception as exc:  # noqa: BLE001 - the power sync goes on
            LOG.error("firewall rules of %s running now not applied: %s",
                      plural(len(wanted), "instance"), exc)

    def _init_virt_events(self) -> None:
        if self.dry_run:
            LOG.info("dry run: lifecycle events are not handled")
            return
        if not self.conf.workarounds.handle_virt_lifecycle_events:
            if self.conf.sync_power_state_interval < 0:
                LOG.warning("lifecycle events are ignored ([workarounds] "
                            "handle_virt_lifecycle_events = false) and the power-state sync "
                            "is disabled: instance power states will go stale")
            else:
                LOG.info("lifecycle events are ignored ([workarounds] "
                         "handle_virt_lifecycle_events = false)")
            return
        self.power_sync.hold()
        self.driver.register_event_listener(self.power_sync.on_event)
        self.power_sync.start_worker()

    def stop(self) -> None:
        self.driver.register_event_listener(None)
        self.power_sync.stop_worker()

    def sync_power_states(self) -> int:
        """The periodic power-state sync (one listing, one read, one batched write)."""
        return self.power_sync.sync_power_states()

    # -- _init_instance -----------------------------------------------------------------------
    def _plan_instance(self, rec: q.InstanceRecord, guest: InstanceInfo | None) -> _Planned:
        """Read the guest's power state and plan one instance (no change anywhere; plan None
        when the guest cannot be read). Never raises."""
        name = guest.name if guest is not None else rec.name
        ref = InstanceRef(rec.uuid, name)
        parsed: list = []  # the VIFs, parsed (and a bad network_info logged) once per instance

        def vifs() -> tuple[VIF, ...] | None:
            if not parsed:
                parsed.append(self._vifs(rec))
            return parsed[0]

        power = self._read_power(ref)
        if isinstance(power, Exception):
            return _Planned(rec, ref, None, vifs, power)
        state = InstanceState(rec.uuid, name, rec.host, rec.vm_state, rec.task_state,
                              rec.power_state, rec.old_vm_state)
        plan = plan_instance(state, power, host=self.host,
                             resume_guests=self.conf.resume_guests_state_on_host_boot)
        if plan.action == "skipped-other-host":
            LOG.warning("instance %s (guest %s) is here but the database gives it to host %s "
                        "and no evacuation record names this host: skipping, not touching it",
                        rec.uuid, name, rec.host)
        return _Planned(rec, ref, plan, vifs, power)

    def _run_plan(self, item: _Planned, migrations: Sequence[q.MigrationRecord]) -> _Started:
        """Execute one instance's plan. Never raises."""
        rec, ref, plan, vifs, power = item
        if plan is None:
            return _Started(InstanceOutcome(rec.uuid, ref.name, rec.vm_state, rec.task_state,
                                            rec.power_state, "failed", str(power)),
                            None, {}, None, vifs)
        outcome, update, mig_changes = self._execute(rec, ref, plan, migrations, vifs)
        if touches_power(plan) and not self.dry_run:
            after = self._read_power(ref)
            power = None if isinstance(after, Exception) else after
        return _Started(outcome, update, mig_changes, power, vifs)

    def _read_power(self, ref: InstanceRef) -> PowerState | Exception:
        """The guest's power state, uncached (NOSTATE when it is missing); the error, logged
        with the uuid, when it cannot be read."""
        try:
            return self.driver.get_info(ref, use_cache=False).power_state
        except InstanceNotFound:
            return PowerState.NOSTATE
        except Exception as exc:  # noqa: BLE001 - one instance never stops the others
            LOG.error("instance %s: cannot read its guest: %s", ref.uuid, exc)
            return exc

    def _execute(self, rec: q.InstanceRecord, ref: InstanceRef, plan: Plan,
                 migrations: Sequence[q.MigrationRecord],
                 vifs: Callable[[], tuple[VIF, ...] | None]):
        values = {"vm_state": rec.vm_state, "task_state": rec.task_state,
                  "power_state": rec.power_state}
        values.update(plan.changes)
        deleted = False
        action, error = plan.action, None
        mig_changes: dict[int, str] = {}
        if plan.changes and self.dry_run:
            LOG.info("dry run: instance %s would be saved with %s", rec.uuid, plan.changes)
        for step in plan.steps:
            try:
                self._run_step(rec, ref, step, migrations, mig_changes, vifs)
            except NotImplementedError:
                LOG.warning("instance %s: the driver cannot %s", rec.uuid, step.op.value)
                continue
            except Exception as exc:  # noqa: BLE001 - recorded, logged with the uuid
                values.update(step.always)
                if step.on_error is OnError.CONTINUE:
                    LOG.error("instance %s: %s failed: %s (going on)", rec.uuid, step.op.value,
                              exc)
                    continue
                if step.on_error is OnError.SET_ERROR:
                    values["vm_state"] = states.ERROR
                LOG.error("instance %s: %s failed: %s%s", rec.uuid, step.op.value, exc,
                          "; instance set to ERROR" if step.on_error is OnError.SET_ERROR
                          else "")
                action, error = "failed", f"{step.op.value}: {exc}"
                break
            then = dict(step.then)
            deleted = bool(then.pop("deleted", False)) or deleted
            values.update(then)
        changed = deleted or any(values[k] != getattr(rec, k) for k in values)
        update = None
        if changed:
            update = q.InstanceUpdate(rec.id, rec.uuid,
                                      {"task_state": rec.task_state, "vm_state": rec.vm_state},
                                      values, delete=deleted)
        outcome = InstanceOutcome(rec.uuid, ref.name, values["vm_state"], values["task_state"],
                                  values["power_state"], action, error)
        return outcome, update, mig_changes

    def _run_step(self, rec: q.InstanceRecord, ref: InstanceRef, step: Step,
                  migrations: Sequence[q.MigrationRecord], mig_changes: dict[int, str],
                  instance_vifs: Callable[[], tuple[VIF, ...] | None]) -> None:
        op = step.op
        if op is Op.ABORT_MIGRATION:
            for mig in migrations:
                if (mig.instance_uuid == rec.uuid and mig.migration_type == states.LIVE_MIGRATION
                        and mig.status in states.LIVE_MIGRATION_ACTIVE_STATUSES):
                    mig_changes[mig.id] = "error"
            LOG.warning("instance %s: live migration interrupted by the restart: migrations %s "
                        "set to error%s", rec.uuid, sorted(mig_changes) or "(none open)",
                        " [dry run]" if self.dry_run else "")
            return
        if self.dry_run:
            LOG.warning("dry run: instance %s: would %s", rec.uuid, op.value)
            return
        vifs = instance_vifs() or ()
        # Per instance at DEBUG: init_host logs progress and a summary of every action.
        LOG.debug("instance %s: %s", rec.uuid, op.value)
        if op is Op.DESTROY:
            self.driver.destroy(ref, vifs, destroy_disks=True)
        elif op is Op.REBOOT_SOFT:
            self.driver.reboot(ref, RebootType.SOFT)
        elif op is Op.REBOOT_HARD:
            self.driver.reboot(ref, RebootType.HARD)
        elif op is Op.UNPAUSE:
            self.driver.unpause(ref)
        elif op is Op.POWER_OFF:
            self.driver.power_off(ref, clean_shutdown=True)
        elif op is Op.POWER_ON:
            self.driver.power_on(ref)
        elif op is Op.PLUG_VIFS:
            self.driver.plug_vifs(ref, vifs)
        elif op is Op.REVERT_RESIZE:
            self.driver.finish_revert_migration(ref, vifs, power_on=step.power_on)
        elif op is Op.RESUME:
            self.driver.resume_state_on_host_boot(ref, vifs)

    def _vifs(self, rec: q.InstanceRecord | None, quiet: bool = False
              ) -> tuple[VIF, ...] | None:
        """The instance's validated VIFs; None (logged) when its network_info is invalid."""
        if rec is None:
            return ()
        return instance_vifs(rec.uuid, rec.network_info, quiet=quiet, log=LOG)

    def _log_summary(self, outcomes: Sequence[InstanceOutcome],
                     evacuated: Sequence[EvacuationOutcome], seconds: float) -> None:
        """One line for the whole start-up: how many instances, each action's count."""
        counts = Counter(o.action for o in outcomes)
        counts.update(e.action for e in evacuated)
        actions = ", ".join(f"{n:,} {a}" for a, n in sorted(counts.items()))
        LOG.info("init_host %sdone in %.1f s: %s%s", "(dry run) " if self.dry_run else "",
                 seconds, plural(len(outcomes) + len(evacuated), "instance"),
                 f" ({actions})" if actions else "")
