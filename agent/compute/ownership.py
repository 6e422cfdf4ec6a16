"""Whether this host may still act on an instance row it read: init_host's re-reads of
ownership before it changes guests (`OwnershipCheck`) and its closing save (`save_start_up`).
The decisions are the conditional save's (agent/db/conditional_save.py), which makes them again
under the rows' locks.

Ownership is read in bulk (one SELECT of the host's rows, one more only for rows that moved)
after planning, then again once RECHECK_AFTER seconds of driver work have passed since the last
read (slow hypervisor calls: a move committed meanwhile is seen before the next guest is
touched)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Sequence

from agent.compute.evacuation import Evacuation
from agent.db import compute_queries as q
from agent.db.conditional_save import LostSave, RowSave, decide_saves, log_lost

LOG = logging.getLogger(__name__)

# Outcome of an instance whose row changed (moved to another host, a new operation) between
# the read and the action or the save: its guest and row were left alone.
LOST_RACE = "lost-race"
RECHECK_AFTER = 2.0  # seconds


def ownership_lost(rec: q.InstanceRecord, owner: q.InstanceOwner | None, host: str
                   ) -> LostSave | None:
    """What makes acting on `rec` wrong now (`owner`: the row re-read, None when it is gone):
    moved to another host, or its vm_state or task_state changed (an operation started).
    None: the row is still this host's, as it was read."""
    current = {} if owner is None else {rec.id: {"host": owner.host,
                                                 "vm_state": owner.vm_state,
                                                 "task_state": owner.task_state}}
    expected = {"host": host, "vm_state": rec.vm_state, "task_state": rec.task_state}
    result = decide_saves([RowSave(rec.id, expected, {}, rec.uuid)], current)
    return result.lost[0] if result.lost else None


def still_evacuated(plans: Sequence[Evacuation],
                    owners: Mapping[str, q.InstanceOwner | None], host: str
                    ) -> list[Evacuation]:
    """The evacuation plans whose instance is not back on `host`: an instance evacuated here
    again keeps its guest (logged), and its old record is left as it is."""
    kept = []
    for plan in plans:
        owner = owners.get(plan.instance_uuid)
        if owner is not None and owner.host == host:
            LOG.warning("instance %s is on this host again: its guest is kept although "
                        "migration %s evacuated it", plan.instance_uuid, plan.migration_id)
            continue
        kept.append(plan)
    return kept


def migration_updates(statuses: Mapping[int, str], migrations: Sequence[q.MigrationRecord]
                      ) -> list[q.MigrationUpdate]:
    """Each new migration status as a conditional save: written only where the record still
    has the status and hosts that were read."""
    read = {m.id: m for m in migrations}
    return [q.MigrationUpdate(mid, {"status": read[mid].status,
                                    "source_compute": read[mid].source_compute,
                                    "dest_compute": read[mid].dest_compute}, status)
            for mid, status in statuses.items()]


class OwnershipCheck:
    """The owners of this host's live instances and of those init_host will act on
    (`acting`), read at construction (`now`: monotonic seconds); `lost(rec, now)` reads them
    again first when RECHECK_AFTER seconds have passed, then decides."""

    def __init__(self, db, host: str, acting: Sequence[str], now: float):
        self._db, self._host, self._uuids = db, host, list(acting)
        self.owners = self._read()
        self._checked_at = now

    def lost(self, rec: q.InstanceRecord, now: float) -> LostSave | None:
        """For an acting instance at `now` (monotonic seconds, read just before acting on
        it): what makes acting on it wrong, None if nothing."""
        if now - self._checked_at >= RECHECK_AFTER:
            self.owners, self._checked_at = self._read(), now
        owner = self.owners.get(rec.uuid)
        if (owner is not None and owner.host == self._host and owner.vm_state == rec.vm_state
                and owner.task_state == rec.task_state):
            return None  # the common case, without building the decision's records
        return ownership_lost(rec, owner, self._host)

    def _read(self) -> dict[str, q.InstanceOwner]:
        with self._db.sessions() as session:
            return q.load_instance_owners(session, self._host, self._uuids)


def save_start_up(db, host: str, updates: Sequence[q.InstanceUpdate],
                  statuses: Mapping[int, str], migrations: Sequence[q.MigrationRecord],
                  outcomes: Sequence) -> list:
    """One transaction: the conditional saves of init_host's instance and migration changes.
    Rows changed since they were read (moved to another host, a new operation) are not
    written; they are logged, and their outcomes (InstanceOutcome) come back as LOST_RACE
    with what changed."""
    with db.sessions.begin() as session:
        saved = q.save_instances(session, host, updates)
        mig_saved = q.save_migrations(session, migration_updates(statuses, migrations))
    log_lost(LOG, saved.lost, "init_host", host)
    log_lost(LOG, mig_saved.lost, "init_host", host)
    lost = {item.label: item.describe() for item in saved.lost}
    return [dataclasses.replace(o, action=LOST_RACE, error=lost[o.uuid]) if o.uuid in lost
            else o for o in outcomes]
