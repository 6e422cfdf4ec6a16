"""Instance power states kept in step with the hypervisor: lifecycle events and the periodic
`sync_power_states` (reference section 5).

`decide_power_sync` is pure. `PowerStateSync` does the I/O in batches: events are queued by the
driver's thread (the listener never blocks) and drained by a worker that re-reads each guest
once, reads the instances in one query and saves the changed power states in one conditional
save (agent/db/conditional_save.py: a row moved or given a task meanwhile is not written; the
lost race is logged). While start-up runs, events are held and drained at its end, so
init_host's own power actions cost a constant number of statements. An event for an instance
whose lock an operation holds (agent/compute/instance_locks.py) waits until the lock is free:
the operation saves the guest's power state itself, and nova's handler skips an instance with
a task in flight anyway; handled meanwhile, the event only took the interpreter from the
operation (about a third of an RPC operation's time, bench/bench_rpc.py).

This agent has no compute API to call: where nova would stop or force-stop an instance whose
guest disagrees with its vm_state, we copy the hypervisor's power state into the database and
log the mismatch (vm_state is left for an operator).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from agent import vocabulary as states
from agent.compute.instance_locks import InstanceLocks
from agent.db import compute_queries as q
from agent.db.conditional_save import log_lost
from agent.display import plural
from agent.errors import InstanceNotFound
from agent.failure_log import FailureLog
from agent.log import request_context
from agent.virt.driver import ComputeDriver
from agent.virt.types import InstanceRef, LifecycleEvent, PowerState

LOG = logging.getLogger(__name__)

_OFF = (PowerState.SHUTDOWN, PowerState.CRASHED)
# How often events waiting for an instance's lock are tried again (seconds).
LOCKED_RETRY_S = 0.05


@dataclass(frozen=True)
class PowerDecision:
    new_power_state: int | None  # None: leave the row alone
    mismatch: str | None = None  # a disagreement worth a warning


def _name(power: int | None) -> str:
    try:
        return PowerState(power).name.lower()
    except ValueError:
        return str(power)


def decide_power_sync(rec: q.InstanceRecord, live: PowerState, host: str) -> PowerDecision:
    """What syncing one instance does (nova's _sync_instance_power_state, without the compute
    API calls: see the module docstring)."""
    if rec.host != host or rec.task_state is not None:
        return PowerDecision(None)  # moved away, or an operation is in flight
    new = int(live) if rec.power_state != int(live) else None
    vm = rec.vm_state
    said = f"the database says {vm} but the guest is {_name(live)}"
    mismatch = None
    if vm == states.ACTIVE and live in _OFF + (PowerState.SUSPENDED,):
        mismatch = said + " (nova would stop the instance; vm_state left for an operator)"
    elif vm == states.ACTIVE and live in (PowerState.PAUSED, PowerState.NOSTATE):
        mismatch = said
    elif vm == states.STOPPED and live not in _OFF + (PowerState.NOSTATE,):
        mismatch = said + " (nova would force it off; vm_state left for an operator)"
    elif vm == states.PAUSED and live in _OFF:
        mismatch = said + " (nova would force it off; vm_state left for an operator)"
    elif vm in (states.DELETED, states.SOFT_DELETED) and live == PowerState.RUNNING:
        mismatch = said
    return PowerDecision(new, mismatch)


class PowerStateSync:
    """Event handling and the periodic sync for one host."""

    def __init__(self, db, driver: ComputeDriver, host: str, *,
                 on_change: Callable[[Sequence[tuple[q.InstanceRecord, PowerState]]], None]
                 | None = None, locks: InstanceLocks | None = None):
        self.db = db
        # The instance locks operations hold (None: events never wait).
        self._locks = locks
        self._waiting = False  # events are queued for instances that were locked
        # Told, before the power states are saved, of this host's instances whose guest is not
        # in the recorded state (the firewall follows the guest); it must not raise.
        self._on_change = on_change
        self.driver = driver
        self.host = host
        self._lock = threading.Lock()
        self._pending: collections.OrderedDict[str, LifecycleEvent] = collections.OrderedDict()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._held = False
        self._worker: threading.Thread | None = None
        self._event_failures = FailureLog(LOG, "handling lifecycle events")
        # Mismatches already reported, so a repeating one is logged when it starts and when
        # it clears, not at every sync.
        self._reported: dict[str, str] = {}
        self._count_mismatch: tuple[int, int] | None = None

    # -- events -------------------------------------------------------------------------------
    def on_event(self, event: LifecycleEvent) -> None:
        """The driver's event listener: queue (newest event per instance wins) and return."""
        with self._lock:
            self._pending.pop(event.instance_uuid, None)
            self._pending[event.instance_uuid] = event
        self._wake.set()

    def hold(self) -> None:
        """Queue events without handling them (start-up is changing guests)."""
        with self._lock:
            self._held = True

    def release(self) -> None:
        """Handle what was queued, now, then let the worker handle events as they come."""
        self.process_pending()
        with self._lock:
            self._held = False
        self._wake.set()

    def start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="lifecycle-events",
                                            daemon=True)
            self._worker.start()

    def is_healthy(self) -> bool:
        """False once the lifecycle-event worker thread, started, is no longer running (read
        by the watchdog; true while events are not handled at all)."""
        return self._worker is None or self._worker.is_alive()

    def stop_worker(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(LOCKED_RETRY_S if self._waiting else None)
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._lock:
                held = self._held
            if not held:
                with request_context():
                    try:
                        self.process_pending()
                    except Exception as exc:  # noqa: BLE001 - the worker must go on
                        self._event_failures.failed(exc)
                    else:
                        self._event_failures.succeeded()

    def process_pending(self) -> int:
        """Handle the queued events: re-read each guest, drop stale events (the guest is no
        longer in the event's state), sync the rest. Returns the number of rows changed."""
        with self._lock:
            events = list(self._pending.values())
            self._pending.clear()
        if self._locks is not None:
            locked = [e for e in events if self._locks.holders(e.instance_uuid)]
            if locked:
                events = [e for e in events if e not in locked]
                with self._lock:  # back in the queue, unless a newer event came meanwhile
                    for event in locked:
                        self._pending.setdefault(event.instance_uuid, event)
            self._waiting = bool(locked)
        if not events:
            return 0
        live: dict[str, PowerState] = {}
        for event in events:
            expected = event.transition.power_state
            try:
                info = self.driver.get_info(InstanceRef(event.instance_uuid, ""),
                                            use_cache=False)
            except InstanceNotFound:
                LOG.debug("event %s for instance %s: no such guest any more",
                          event.transition.value, event.instance_uuid)
                continue
            except Exception as exc:  # noqa: BLE001
                LOG.warning("event %s for instance %s: cannot read the guest: %s",
                            event.transition.value, event.instance_uuid, exc)
                continue
            if info.power_state != expected:
                LOG.debug("event %s for instance %s is stale (guest is %s): dropped",
                          event.transition.value, event.instance_uuid, _name(info.power_state))
                continue
            live[event.instance_uuid] = info.power_state
        if not live:
            return 0
        with self.db.sessions() as session:
            rows = q.load_instances_by_uuid(session, list(live))
        return self._apply(rows, live, why="event")

    # -- periodic -----------------------------------------------------------------------------
    def sync_power_states(self) -> int:
        """Every instance of this host against the hypervisor (one listing, one read, one
        batched write); guests missing from the hypervisor read NOSTATE."""
        guests = {g.uuid: g.power_state for g in self.driver.list_instances()}
        with self.db.sessions() as session:
            rows = q.load_host_instances(session, self.host)
        counts = (len(rows), len(guests))
        if counts[0] != counts[1] and counts != self._count_mismatch:
            LOG.warning("power-state sync: %s in the database for host %s, %s on the "
                        "hypervisor", plural(counts[0], "instance"), self.host,
                        plural(counts[1], "guest"))
        elif counts[0] == counts[1] and self._count_mismatch is not None:
            LOG.info("power-state sync: instance and guest counts agree again (%d)", counts[0])
        self._count_mismatch = counts if counts[0] != counts[1] else None
        live = {r.uuid: guests.get(r.uuid, PowerState.NOSTATE) for r in rows}
        # An instance that left this host (deleted, evacuated) is forgotten: a long-running
        # agent does not keep a warning memory for every instance it ever had.
        for uuid in self._reported.keys() - live.keys():
            del self._reported[uuid]
        return self._apply(rows, live, why="sync")

    def _apply(self, rows: Iterable[q.InstanceRecord], live: dict[str, PowerState],
               why: str) -> int:
        changes: list[q.InstanceUpdate] = []
        rows = list(rows)
        moved = [(rec, live[rec.uuid]) for rec in rows
                 if rec.host == self.host and rec.power_state != int(live[rec.uuid])]
        if moved and self._on_change is not None:
            self._on_change(moved)
        for rec in rows:
            decision = decide_power_sync(rec, live[rec.uuid], self.host)
            if decision.mismatch and self._reported.get(rec.uuid) != decision.mismatch:
                LOG.warning("instance %s: %s", rec.uuid, decision.mismatch)
                self._reported[rec.uuid] = decision.mismatch
            elif not decision.mismatch and self._reported.pop(rec.uuid, None):
                LOG.info("instance %s: database and hypervisor agree again", rec.uuid)
            if decision.new_power_state is not None:
                LOG.info("instance %s: power_state %s -> %s (%s)", rec.uuid,
                         _name(rec.power_state), _name(decision.new_power_state), why)
                changes.append(q.InstanceUpdate(
                    rec.id, rec.uuid, {"task_state": None, "vm_state": rec.vm_state,
                                       "power_state": rec.power_state},
                    {"power_state": decision.new_power_state}))
        if not changes:
            return 0
        with self.db.sessions.begin() as session:
            saved = q.save_instances(session, self.host, changes)
        log_lost(LOG, saved.lost, f"power-state {why}", self.host)
        return len(saved.won)
