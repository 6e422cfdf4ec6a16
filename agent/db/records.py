"""One frozen, typed record per table, whichever query module reads it: `InstanceRecord` for
instances (compute_queries for the compute host, server_queries for the control plane),
`MigrationRecord` for migrations, `NodeRecord` for compute_nodes (compute_queries,
node_queries for the scheduler, hypervisor_queries for the API). Every reader selects the
record's columns (`*_COLUMNS`), so a record is always complete. The other tables' records live
with their queries: ServiceRecord in service_queries, FlavorRecord in flavor_queries, the
action, event and fault records in action_queries. (compute_queries.InstanceOwner is not a
record: the five columns init_host re-reads to see whether it still owns a row.)"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Mapping, NamedTuple

from agent.db.models import ComputeNode, Instance, Migration


@dataclass(frozen=True)
class InstanceRecord:
    """One instances row (nova's Instance): sizes in nova's units (vcpus, memory_mb and swap
    MiB, root_gb and ephemeral_gb GiB); `network_info` the JSON list of VIFs, `flavor`,
    `old_flavor` and `new_flavor` JSON copies of flavors; times UTC; `deleted` 0 while live,
    the row's id once soft-deleted. The fields from `network_info` on are nullable columns and
    default to None (`deleted` to 0), so a record built by hand names only what it needs."""
    id: int
    uuid: str
    display_name: str | None
    host: str | None
    node: str | None
    vm_state: str | None
    task_state: str | None
    power_state: int | None
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    network_info: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    os_type: str | None = None
    old_vm_state: str | None = None
    flavor: str | None = None
    old_flavor: str | None = None
    new_flavor: str | None = None
    instance_type_id: int | None = None
    image_ref: str | None = None
    created_at: dt.datetime | None = None
    launched_at: dt.datetime | None = None
    terminated_at: dt.datetime | None = None
    deleted: int = 0

    @property
    def name(self) -> str:
        """The guest's name on the hypervisor (display name, else the uuid)."""
        return self.display_name or self.uuid


@dataclass(frozen=True)
class MigrationRecord:
    """One migrations row (nova's Migration): `migration_type` 'migration', 'resize',
    'live-migration' or 'evacuation'; `status` nova's migration status; `created_at` UTC;
    `deleted` 0 while live. The one record of the table, for every reader: init_host's
    evacuation check, the resource tracker's usage (usage.py) and the operations."""
    id: int
    uuid: str
    instance_uuid: str
    source_compute: str | None
    dest_compute: str | None
    source_node: str | None
    dest_node: str | None
    migration_type: str
    status: str
    created_at: dt.datetime | None = None
    deleted: int = 0


# Columns of compute_nodes that the resource tracker owns (compared to decide on a save).
NODE_COLUMNS = ("service_id", "host", "hypervisor_hostname", "vcpus", "memory_mb", "local_gb",
                "vcpus_used", "memory_mb_used", "local_gb_used", "free_ram_mb", "free_disk_gb",
                "disk_available_least", "current_workload", "running_vms", "hypervisor_type",
                "hypervisor_version", "cpu_info", "stats", "host_ip", "cpu_allocation_ratio",
                "ram_allocation_ratio", "disk_allocation_ratio", "reserved_host_cpus",
                "reserved_host_memory_mb", "reserved_host_disk_mb")


class NodeRecord(NamedTuple):
    """One live compute_nodes row as the resource tracker last saved it: sizes in vcpus, MiB
    and GiB; free_ram_mb and free_disk_gb None until the node's first audit, the allocation
    ratios None when unset; `cpu_info` and `stats` JSON text. A tuple in the order of its
    fields, built from a result row in one call (the hypervisor API reads 10,000 at once)."""
    id: int
    uuid: str
    service_id: int | None
    host: str
    hypervisor_hostname: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    free_ram_mb: int | None
    free_disk_gb: int | None
    disk_available_least: int | None
    current_workload: int | None
    running_vms: int | None
    hypervisor_type: str
    hypervisor_version: int
    cpu_info: str
    stats: str | None
    host_ip: str | None
    cpu_allocation_ratio: float | None
    ram_allocation_ratio: float | None
    disk_allocation_ratio: float | None
    # The reserved host resources as the node's last audit saved them (vCPUs, MiB, MiB; placement's
    # inventory 'reserved'); None before that.
    reserved_host_cpus: int | None = None
    reserved_host_memory_mb: int | None = None
    reserved_host_disk_mb: int | None = None

    @property
    def values(self) -> Mapping[str, object]:
        """The columns the resource tracker writes (NODE_COLUMNS), by name."""
        return {c: getattr(self, c) for c in NODE_COLUMNS}


def _columns(record: type, table) -> list:
    names = getattr(record, "_fields", None) or [f.name for f in fields(record)]
    return [getattr(table.c, name) for name in names]


INSTANCE_COLUMNS = _columns(InstanceRecord, Instance.__table__)
MIGRATION_COLUMNS = _columns(MigrationRecord, Migration.__table__)
NODE_RECORD_COLUMNS = _columns(NodeRecord, ComputeNode.__table__)
