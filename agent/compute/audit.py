"""The resource audit's plan, as pure functions: from what the driver reports and what the
database holds, every node's row values, its usage and free capacity, and what to do with its
row. `ResourceTracker` (resource_tracker.py) reads, calls `plan_audit`, and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from agent.compute.node_identity import NodeIdentity
from agent.compute.usage import (Flavor, FreeResources, Reserved, TrackedInstance,
                                 allocation_ratio, compute_usage, free_resources,
                                 instances_on_node)
from agent.db import compute_queries as q
from agent.virt.types import HostResources

CREATE, UPDATE, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class NodeReport:
    """A node after an audit: nova's compute-node fields, its free capacity, and what the
    audit did to the row ('created', 'updated', 'unchanged'; 'would-create', 'would-update'
    when the database took no write: a dry run)."""

    uuid: str
    hypervisor_hostname: str
    values: Mapping[str, object]
    stats: Mapping[str, str]
    saved: str
    free: FreeResources | None = None


@dataclass(frozen=True)
class AuditResult:
    nodes: tuple[NodeReport, ...]
    orphan_nodes: tuple[str, ...] = ()
    unknown_domains: tuple[str, ...] = ()  # uuids of guests no live instance row knows


def tracked_instance(rec: q.InstanceRecord) -> TrackedInstance:
    return TrackedInstance(
        uuid=rec.uuid, host=rec.host, node=rec.node, vm_state=rec.vm_state,
        task_state=rec.task_state,
        flavor=Flavor(rec.vcpus, rec.memory_mb, rec.root_gb, rec.ephemeral_gb, rec.swap),
        project_id=rec.project_id, os_type=rec.os_type,
        old_flavor=Flavor.from_json(rec.old_flavor), new_flavor=Flavor.from_json(rec.new_flavor))


def node_values(conf, res: HostResources, usage, service_id: int | None, host: str,
                stored: Mapping[str, object] | None) -> dict[str, object]:
    """Every tracker-owned column of the node's row (pure)."""
    stored = stored or {}
    return {
        "service_id": service_id, "host": host, "hypervisor_hostname": res.hypervisor_hostname,
        "vcpus": res.vcpus, "memory_mb": res.memory_mb, "local_gb": res.local_gb,
        "vcpus_used": usage.vcpus_used, "memory_mb_used": usage.memory_mb_used,
        "local_gb_used": usage.local_gb_used, "free_ram_mb": usage.free_ram_mb,
        "free_disk_gb": usage.free_disk_gb, "disk_available_least": res.disk_available_least,
        "current_workload": usage.current_workload, "running_vms": usage.running_vms,
        "hypervisor_type": res.hypervisor_type, "hypervisor_version": res.hypervisor_version,
        "cpu_info": res.cpu_info or "", "stats": q.stats_json(usage.stats),
        "host_ip": conf.my_ip,
        "cpu_allocation_ratio": allocation_ratio(conf.cpu_allocation_ratio,
                                                 stored.get("cpu_allocation_ratio"),
                                                 conf.initial_cpu_allocation_ratio),
        "ram_allocation_ratio": allocation_ratio(conf.ram_allocation_ratio,
                                                 stored.get("ram_allocation_ratio"),
                                                 conf.initial_ram_allocation_ratio),
        "disk_allocation_ratio": allocation_ratio(conf.disk_allocation_ratio,
                                                  stored.get("disk_allocation_ratio"),
                                                  conf.initial_disk_allocation_ratio),
        "reserved_host_cpus": conf.reserved_host_cpus,
        "reserved_host_memory_mb": conf.reserved_host_memory_mb,
        "reserved_host_disk_mb": conf.reserved_host_disk_mb,
    }




@dataclass(frozen=True)
class NodePlan:
    """What the audit does for one node: its row (`row_id` None: a new row, created with the
    node's uuid), the values to hold, and `action` (CREATE, UPDATE or UNCHANGED)."""

    uuid: str
    nodename: str
    row_id: int | None
    values: Mapping[str, object]
    stats: Mapping[str, str]
    action: str
    free: FreeResources


def plan_audit(conf, *, host: str, service_id: int | None, nodes: Sequence[str],
               identities: Mapping[str, NodeIdentity], resources: Mapping[str, HostResources],
               rows: Sequence[q.NodeRecord], tracked: Sequence[TrackedInstance],
               migrations: Sequence[q.MigrationRecord]) -> list[NodePlan]:
    """One NodePlan per node the driver reports (in its order): usage from the database's
    instances and migrations (nova's resource tracker, usage.py), never the hypervisor's
    *_used figures; a row is written only when a value besides updated_at changed."""
    by_uuid = {t.uuid: t for t in tracked}
    reserved = Reserved(conf.reserved_host_memory_mb, conf.reserved_host_disk_mb,
                        conf.reserved_host_cpus)
    plans = []
    for nodename in nodes:
        res = resources[nodename]
        ident = identities[nodename]
        row = next((r for r in rows if r.uuid == ident.uuid), None)
        usage = compute_usage(
            memory_mb=res.memory_mb, local_gb=res.local_gb,
            node_instances=instances_on_node(tracked, host, nodename,
                                             only_node=len(nodes) == 1),
            migrations=migrations, instances_by_uuid=by_uuid, host=host, nodename=nodename,
            reserved=reserved, driver_stats=res.stats)
        values = node_values(conf, res, usage, service_id, host, row.values if row else None)
        free = free_resources(
            vcpus=res.vcpus, memory_mb=res.memory_mb, local_gb=res.local_gb, usage=usage,
            cpu_allocation_ratio=values["cpu_allocation_ratio"],
            ram_allocation_ratio=values["ram_allocation_ratio"],
            disk_allocation_ratio=values["disk_allocation_ratio"],
            disk_available_least=res.disk_available_least)
        if row is None:
            action = CREATE
        elif dict(row.values) != values:
            action = UPDATE
        else:
            action = UNCHANGED
        plans.append(NodePlan(ident.uuid, nodename, row.id if row else None, values,
                              usage.stats, action, free))
    return plans
