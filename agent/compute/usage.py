"""Resource usage of one compute node, computed from database rows: pure functions.

Follows nova's resource tracker (reference section 7): usage is the reserved host resources plus
the flavors of the node's instances (deleted and offloaded ones excepted) plus the flavors that
in-progress migrations hold; the hypervisor's own *_used figures are not used.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from agent import vocabulary as states
from agent.db.records import MigrationRecord
# One flavor type for the resource figures and the driver's spawn.
from agent.virt.types import Flavor  # noqa: F401


@dataclass(frozen=True)
class TrackedInstance:
    uuid: str
    host: str | None
    node: str | None
    vm_state: str | None
    task_state: str | None
    flavor: Flavor
    project_id: str | None = None
    os_type: str | None = None
    old_flavor: Flavor | None = None
    new_flavor: Flavor | None = None


@dataclass(frozen=True)
class Reserved:
    memory_mb: int = 0
    disk_mb: int = 0
    cpus: int = 0


@dataclass(frozen=True)
class NodeUsage:
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    free_ram_mb: int
    free_disk_gb: int
    running_vms: int
    current_workload: int
    stats: Mapping[str, str] = field(default_factory=dict)
    migration_ids: frozenset[int] = frozenset()


def is_counted(inst: TrackedInstance) -> bool:
    """Deleted instances hold nothing; shelved-offloaded ones only while spawning back."""
    if inst.vm_state == states.DELETED:
        return False
    if inst.vm_state == states.SHELVED_OFFLOADED and inst.task_state != states.SPAWNING:
        return False
    return True


def is_moving(inst: TrackedInstance) -> bool:
    """Resizing, rebuilding or live-migrating: the instance may hold resources on two nodes."""
    if inst.vm_state == states.RESIZED:
        return True
    if inst.vm_state in (states.ACTIVE, states.STOPPED) and (
            inst.task_state in states.RESIZE_TASKS or inst.task_state in states.REBUILD_TASKS):
        return True
    return inst.task_state == states.MIGRATING


def instances_on_node(instances: Iterable[TrackedInstance], host: str, nodename: str,
                      only_node: bool) -> list[TrackedInstance]:
    """This node's instances: host and node match (an instance without a node belongs to the
    host's only node)."""
    return [i for i in instances if i.host == host
            and (i.node == nodename or (i.node is None and only_node))]


def newest_migrations(migrations: Iterable[MigrationRecord]) -> list[MigrationRecord]:
    """One in-progress migration per instance: the newest."""
    newest: dict[str, MigrationRecord] = {}
    epoch = dt.datetime.min
    for mig in migrations:
        if mig.status in states.FINISHED_MIGRATION_STATUSES:
            continue
        seen = newest.get(mig.instance_uuid)
        if seen is None or (mig.created_at or epoch, mig.id) > (seen.created_at or epoch, seen.id):
            newest[mig.instance_uuid] = mig
    return list(newest.values())


def migration_flavor(mig: MigrationRecord, inst: TrackedInstance, host: str, nodename: str,
                     tracked: frozenset[str]) -> Flavor | None:
    """The flavor an in-progress migration holds on this node, or None."""
    incoming = mig.dest_compute == host and mig.dest_node == nodename
    outbound = mig.source_compute == host and mig.source_node == nodename
    if incoming and outbound:
        # Same-node resize: keep room for the flavor the instance does not hold right now.
        if inst.old_flavor is not None and inst.flavor == inst.old_flavor:
            return inst.new_flavor or inst.flavor
        return inst.old_flavor or inst.flavor
    if incoming and inst.uuid not in tracked:
        return inst.new_flavor or inst.flavor
    if outbound and inst.uuid not in tracked:
        return inst.old_flavor or inst.flavor
    return None


def compute_usage(*, memory_mb: int, local_gb: int, node_instances: Sequence[TrackedInstance],
                  migrations: Sequence[MigrationRecord],
                  instances_by_uuid: Mapping[str, TrackedInstance], host: str, nodename: str,
                  reserved: Reserved, driver_stats: Mapping[str, str] | None = None) -> NodeUsage:
    """Usage of one node (nova's field names and stats keys)."""
    counted = [i for i in node_instances if is_counted(i)]
    tracked = frozenset(i.uuid for i in counted)
    flavors = [i.flavor for i in counted]
    migration_ids = set()
    for mig in newest_migrations(migrations):
        inst = instances_by_uuid.get(mig.instance_uuid)
        if inst is None or not is_moving(inst):
            continue
        flavor = migration_flavor(mig, inst, host, nodename, tracked)
        if flavor is not None:
            flavors.append(flavor)
            migration_ids.add(mig.id)
    vcpus_used = reserved.cpus + sum(f.vcpus for f in flavors)
    memory_mb_used = reserved.memory_mb + sum(f.memory_mb for f in flavors)
    disk_gb = reserved.disk_mb / 1024 + sum(f.root_gb + f.ephemeral_gb + f.swap / 1024
                                            for f in flavors)
    stats = instance_stats(counted)
    workload = sum(int(v) for k, v in stats.items()
                   if k.startswith("num_task_") and k != "num_task_None")
    merged = dict(driver_stats or {})
    merged.update(stats)
    return NodeUsage(
        vcpus_used=vcpus_used,
        memory_mb_used=memory_mb_used,
        local_gb_used=int(disk_gb),
        free_ram_mb=memory_mb - memory_mb_used,
        free_disk_gb=int(local_gb - disk_gb),
        running_vms=len(counted),
        current_workload=workload,
        stats=merged,
        migration_ids=frozenset(migration_ids),
    )


def instance_stats(instances: Sequence[TrackedInstance]) -> dict[str, str]:
    """nova's per-node stats: num_instances, num_vm_*, num_task_*, num_os_type_*, num_proj_*,
    io_workload. Values are strings, as nova stores them."""
    counts: Counter[str] = Counter()
    io = 0
    for inst in instances:
        counts[f"num_vm_{inst.vm_state}"] += 1
        counts[f"num_task_{inst.task_state}"] += 1
        counts[f"num_os_type_{inst.os_type}"] += 1
        counts[f"num_proj_{inst.project_id}"] += 1
        if inst.vm_state == states.BUILDING or inst.task_state in states.IO_TASKS:
            io += 1
    stats = {"num_instances": str(len(instances)), "io_workload": str(io)}
    stats.update((key, str(value)) for key, value in sorted(counts.items()))
    return stats


def allocation_ratio(configured: float | None, stored: float | None, initial: float) -> float:
    """The configured ratio when set; else the stored one; a new node (or 0.0) gets initial."""
    if configured:
        return configured
    if stored:
        return stored
    return initial


@dataclass(frozen=True)
class FreeResources:
    """What a node can still give new instances: vCPUs, memory (MiB) and disk (GiB). Negative
    when the node holds more than it may (a ratio was lowered)."""

    vcpus: int
    memory_mb: int
    disk_gb: int


def free_resources(*, vcpus: int, memory_mb: int, local_gb: int, usage: NodeUsage,
                   cpu_allocation_ratio: float, ram_allocation_ratio: float,
                   disk_allocation_ratio: float,
                   disk_available_least: int | None = None) -> FreeResources:
    """Free capacity of a node as nova's CoreFilter, RamFilter and DiskFilter compute it
    (agent.control.scheduler): total x allocation ratio - used, where used counts the reserved
    host resources (`usage` is `compute_usage`'s: reserved_host_* are in its *_used figures).
    Disk: local_gb x ratio - (local_gb - free), free being disk_available_least when the driver
    reports it, else the tracker's free_disk_gb. `vcpus`, `memory_mb`, `local_gb`: the node's
    totals (HostResources). Rounded down: a request of n whole units fits when n <= it."""
    free_disk = disk_available_least if disk_available_least is not None else usage.free_disk_gb
    return FreeResources(
        vcpus=math.floor(vcpus * cpu_allocation_ratio - usage.vcpus_used),
        memory_mb=math.floor(memory_mb * ram_allocation_ratio - usage.memory_mb_used),
        disk_gb=math.floor(local_gb * disk_allocation_ratio - (local_gb - free_disk)))
