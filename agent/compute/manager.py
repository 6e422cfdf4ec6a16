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

Plans run through the step runner (agent/compute/steps.py), each instance under its lock
(agent/compute/instance_locks.py, the registry the instance operations share). A dry run is the
same code with a recording driver (agent/virt/recording.py), a firewall whose restores are only
logged and a read-only database whose conditional save reports and writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Mapping, NamedTuple, Sequence

from agent import vocabulary as states
from agent.compute.decisions import (InstanceState, Op, Plan, Step, needs_filtering,
                                     plan_instance, touches_power)
from agent.compute.evacuation import (EvacuationOutcome, destroy_evacuated, plan_evacuations)
from agent.compute.instance_locks import InstanceLocks
from agent.compute.instance_network import instance_vifs
from agent.compute.outcomes import InitHostResult, InstanceOutcome, UnknownDomain  # noqa: F401
from agent.compute.ownership import (LOST_RACE, OwnershipCheck, save_start_up,
                                     still_evacuated)
from agent.compute.power_sync import PowerStateSync
from agent.compute.steps import run_steps
from agent.db import compute_queries as q
from agent.db.conditional_save import LostSave, log_lost
from agent.display import plural
from agent.errors import FirewallError, InstanceNotFound
from agent.progress import Progress
from agent.virt.driver import ComputeDriver
from agent.virt.types import VIF, InstanceInfo, InstanceRef, PowerState

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartedInstances:
    """What `_start_instances` did: every instance's outcome, the evacuated guests, the rows
    to save (instance updates; migration id -> new status), and the firewall's final apply
    when it failed."""

    outcomes: tuple[InstanceOutcome, ...]
    evacuated: tuple[EvacuationOutcome, ...]
    updates: tuple[q.InstanceUpdate, ...]
    migration_statuses: Mapping[int, str]
    firewall_error: FirewallError | None = None


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
                 clock: Callable[[], float] = time.monotonic,
                 locks: InstanceLocks | None = None):
        self.conf = conf
        # Monotonic seconds: init_host's progress lines and its re-reads of ownership.
        self._clock = clock
        self.db = db
        self.driver = driver
        self.firewall = firewall
        self.host = host or conf.host
        # Held by start-up per instance while its plan runs and is saved, and by every
        # instance operation.
        self.locks = locks or InstanceLocks()
        self.power_sync = PowerStateSync(db, driver, self.host, on_change=self._follow_guests,
                                         locks=self.locks)

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
        by_uuid = {r.uuid: r for r in records}
        started = self._start_instances(records, guests, migrations, by_uuid)
        outcomes = list(started.outcomes)
        if started.updates or started.migration_statuses:
            outcomes = save_start_up(self.db, self.host, started.updates,
                                     started.migration_statuses, migrations, outcomes)
        self.power_sync.release()
        unknown = tuple(UnknownDomain(g.uuid, g.name, int(g.power_state))
                        for g in guests.values() if g.uuid not in by_uuid)
        if unknown:
            LOG.warning("%s on the hypervisor %s no instance in the database (left alone): %s",
                        plural(len(unknown), "guest"), "has" if len(unknown) == 1 else "have",
                        ", ".join(f"{d.name} ({d.uuid})" for d in unknown[:10])
                        + (" ..." if len(unknown) > 10 else ""))
        self._log_summary(outcomes, started.evacuated, self._clock() - started_at)
        if started.firewall_error is not None:
            # The driver work is saved above; the failed apply is reported now.
            raise started.firewall_error
        return InitHostResult(tuple(outcomes), started.evacuated, unknown)

    def _start_instances(self, records, guests, migrations, by_uuid) -> StartedInstances:
        """Inside one firewall deferral (one apply at the end, holding the rules of exactly the
        instances of this host whose guest needs filtering once its steps are done): every
        instance planned (reads only), ownership re-read in bulk, evacuated guests destroyed,
        then each plan run, under the instance's lock, only where the row is still this host's
        as it was read (ownership.OwnershipCheck). A failed final apply is returned in the
        result (`firewall_error`): the driver work is done and is saved all the same."""
        migration_statuses: dict[int, str] = {}
        outcomes: list[InstanceOutcome] = []
        updates: list[q.InstanceUpdate] = []
        evacuated: tuple[EvacuationOutcome, ...] = ()
        firewall_error: FirewallError | None = None
        try:
            with self.firewall.defer_apply():
                planned, check, progress, evacuated, statuses = self._plan_all(
                    records, guests, migrations, by_uuid)
                migration_statuses.update(statuses)
                filtered: list[str] = []
                lost: list[LostSave] = []
                for item in planned:
                    now = progress.advance()
                    rec = item.rec
                    race = check.lost(rec, now) if self._acts(item) else None
                    if race is not None:
                        lost.append(race)
                        outcomes.append(InstanceOutcome(rec.uuid, item.ref.name, rec.vm_state,
                                                        rec.task_state, rec.power_state,
                                                        LOST_RACE, race.describe()))
                        continue
                    with self.locks.lock(rec.uuid):
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
                self.firewall.retain_only(filtered)
        except FirewallError as exc:
            firewall_error = exc
        return StartedInstances(tuple(outcomes), evacuated, tuple(updates), migration_statuses,
                                firewall_error)

    def _plan_all(self, records, guests, migrations, by_uuid):
        """Every instance planned (reads only), ownership re-read in bulk, the guests of
        instances still evacuated from here destroyed. Returns the plans, the ownership check,
        the progress counter, the evacuations' outcomes and their migration statuses."""
        plans: list = []
        if self.driver.capabilities.supports_evacuate:
            plans = plan_evacuations(migrations, self.host,
                                     {u: g.name for u, g in guests.items()},
                                     self.conf.compute.shared_storage)
        evacuated = {p.instance_uuid for p in plans}
        planned = [self._plan_instance(rec, guests.get(rec.uuid))
                   for rec in records if rec.uuid not in evacuated]
        progress = Progress(LOG, "init_host", len(planned), clock=self._clock)
        check = OwnershipCheck(self.db, self.host, [p.rec.uuid for p in planned if self._acts(p)],
                               progress.started_at)
        outcomes: list[EvacuationOutcome] = []
        statuses: dict[int, str] = {}
        if plans:
            outcomes, statuses = destroy_evacuated(
                self.driver, still_evacuated(plans, check.owners, self.host),
                network_info=lambda uuid: self._vifs(by_uuid.get(uuid), quiet=True) or ())
        return planned, check, progress, tuple(outcomes), statuses

    def _acts(self, item: _Planned) -> bool:
        """Whether the plan changes the guest or the row of an instance of this host."""
        return (item.rec.host == self.host and item.plan is not None
                and bool(item.plan.steps or item.plan.changes))

    def _filter_instance(self, rec: q.InstanceRecord, outcome: InstanceOutcome,
                         vifs: Callable[[], tuple[VIF, ...] | None]) -> InstanceOutcome:
        """(Re)build the rules of an instance whose guest needs filtering. A failure is logged
        with the uuid and shown in the outcome; the instance's previous rules stay."""
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
        if touches_power(plan):
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
        """One plan through the step runner; its outcome, the row update (None: unchanged)
        and the migration statuses its steps set."""
        mig_changes: dict[int, str] = {}

        def abort_migration(_step: Step) -> None:
            for mig in migrations:
                if (mig.instance_uuid == rec.uuid and mig.migration_type == states.LIVE_MIGRATION
                        and mig.status in states.LIVE_MIGRATION_ACTIVE_STATUSES):
                    mig_changes[mig.id] = "error"
            LOG.warning("instance %s: live migration interrupted by the restart: migrations %s "
                        "set to error", rec.uuid, sorted(mig_changes) or "(none open)")

        current = {"vm_state": rec.vm_state, "task_state": rec.task_state,
                   "power_state": rec.power_state}
        done = run_steps(self.driver, ref, plan, current, vifs,
                         local={Op.ABORT_MIGRATION: abort_migration})
        values = done.values
        update = None
        if done.deleted or any(values[k] != getattr(rec, k) for k in values):
            update = q.InstanceUpdate(rec.id, rec.uuid,
                                      {"task_state": rec.task_state, "vm_state": rec.vm_state},
                                      values, delete=done.deleted)
        outcome = InstanceOutcome(rec.uuid, ref.name, values["vm_state"], values["task_state"],
                                  values["power_state"], done.action, done.error)
        return outcome, update, mig_changes

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
        LOG.info("init_host done in %.1f s: %s%s", seconds,
                 plural(len(outcomes) + len(evacuated), "instance"),
                 f" ({actions})" if actions else "")
