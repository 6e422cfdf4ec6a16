"""Evacuated instances: their guests are destroyed here only when the database holds an
evacuation record naming this host as the source.

`plan_evacuations` is pure: which records apply, which guests exist here, whether their disks go.
`destroy_evacuated` executes a plan through the driver (a dry run's driver only records it, and
says so: the lines logged here name the intent, not the act).
The manager runs it only after the node identity was checked (see node_identity.py), so a host
that was renamed stops start-up instead of destroying guests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from agent import vocabulary as states
from agent.db.compute_queries import MigrationRecord
from agent.virt.driver import ComputeDriver
from agent.virt.types import VIF, InstanceRef

LOG = logging.getLogger(__name__)

# Outcome words (the inventory's `evacuated[].action`).
DESTROYED = "evacuated-destroyed"  # the local guest was destroyed, the record completed
NOT_HERE = "evacuated-not-here"    # no guest here any more; the record completed
FAILED = "destroy-failed"          # destroy failed; the record is left for the next start


@dataclass(frozen=True)
class Evacuation:
    migration_id: int
    instance_uuid: str
    guest_name: str | None  # the local guest's name, None when there is none here
    destroy_disks: bool


@dataclass(frozen=True)
class EvacuationOutcome:
    instance_uuid: str
    migration_id: int
    action: str


def plan_evacuations(migrations: Iterable[MigrationRecord], host: str,
                     local_guests: Mapping[str, str], shared_storage: bool
                     ) -> list[Evacuation]:
    """The evacuation records that name `host` as the source, one per instance (the newest
    record wins), with the local guest (uuid -> name on this hypervisor) when there is one."""
    chosen: dict[str, MigrationRecord] = {}
    for mig in migrations:
        if (mig.source_compute == host and mig.migration_type == states.EVACUATION
                and mig.status in states.EVACUATION_CLEANUP_STATUSES):
            seen = chosen.get(mig.instance_uuid)
            if seen is None or mig.id > seen.id:
                chosen[mig.instance_uuid] = mig
    return [Evacuation(mig.id, uuid, local_guests.get(uuid), destroy_disks=not shared_storage)
            for uuid, mig in sorted(chosen.items(), key=lambda item: item[1].id)]


def destroy_evacuated(driver: ComputeDriver, plans: Sequence[Evacuation], *,
                      network_info: Callable[[str], Sequence[VIF]]
                      ) -> tuple[list[EvacuationOutcome], dict[int, str]]:
    """Destroy the local guest of each evacuated instance. Returns the outcomes and the
    migration statuses to save ({id: 'completed'})."""
    outcomes: list[EvacuationOutcome] = []
    statuses: dict[int, str] = {}
    for ev in plans:
        if ev.guest_name is None:
            LOG.info("instance %s was evacuated (migration %s) and has no guest here: the "
                     "migration is to be marked completed", ev.instance_uuid, ev.migration_id)
            outcomes.append(EvacuationOutcome(ev.instance_uuid, ev.migration_id, NOT_HERE))
            statuses[ev.migration_id] = "completed"
            continue
        disks = "with its disks" if ev.destroy_disks else "keeping its disks (shared storage)"
        # Worded as the intent, true of a dry run too: the driver's call is what destroys (a
        # dry run's recording driver logs "would destroy" instead).
        LOG.warning("instance %s was evacuated (migration %s): its guest %s here is to be "
                    "destroyed, %s", ev.instance_uuid, ev.migration_id, ev.guest_name, disks)
        try:
            driver.destroy(InstanceRef(ev.instance_uuid, ev.guest_name),
                           network_info(ev.instance_uuid), destroy_disks=ev.destroy_disks)
        except Exception as exc:  # noqa: BLE001 - one failure does not stop the others
            LOG.error("instance %s: destroying the evacuated guest failed: %s; the migration "
                      "%s stays %s for the next start", ev.instance_uuid, exc, ev.migration_id,
                      "open")
            outcomes.append(EvacuationOutcome(ev.instance_uuid, ev.migration_id, FAILED))
            continue
        statuses[ev.migration_id] = "completed"
        outcomes.append(EvacuationOutcome(ev.instance_uuid, ev.migration_id, DESTROYED))
    return outcomes, statuses
