"""The host inventory that `agent --once` prints: a readable table, or the JSON object of
DESIGN.md ("Contracts that other tools rely on").

Each node also carries what nova's `openstack hypervisor show` gives: `state` (its compute
service up or down), `status` (enabled or disabled) and `service` (`host`, `id`, `uuid`,
`disabled_reason`). The JSON lists every instance; the table lists them all up to
MAX_TABLE_INSTANCES and beyond that every instance with an action, saying how many it leaves
out. Versions read major.minor.release in the table; the JSON keeps nova's packed integer.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agent.display import escape, grid, pairs, plural, version_text

NODE_FIELDS = ("hypervisor_hostname", "uuid", "vcpus", "vcpus_used", "memory_mb",
               "memory_mb_used", "free_ram_mb", "local_gb", "local_gb_used", "free_disk_gb",
               "disk_available_least", "running_vms", "current_workload", "hypervisor_type",
               "hypervisor_version", "host_ip", "cpu_allocation_ratio", "ram_allocation_ratio",
               "disk_allocation_ratio")
_POWER_NAMES = {0: "nostate", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed",
                7: "suspended"}
# Up to this many instances the table lists every one; beyond, only those with an action.
MAX_TABLE_INSTANCES = 50


@dataclass(frozen=True)
class ServiceStatus:
    """The host's compute service as `openstack hypervisor show` reports it with a node."""

    host: str
    id: int
    uuid: str
    disabled: bool
    disabled_reason: str | None
    up: bool

    def node_fields(self) -> dict[str, Any]:
        return {"state": "up" if self.up else "down",
                "status": "disabled" if self.disabled else "enabled",
                "service": {"host": self.host, "id": self.id, "uuid": self.uuid,
                            "disabled_reason": self.disabled_reason}}


# A node without a service row (nothing registered): nova's fields, empty.
_NO_SERVICE = {"state": None, "status": None, "service": None}


@dataclass(frozen=True)
class Inventory:
    host: str
    driver: Any  # agent.virt.types.DriverInfo
    nodes: tuple = ()            # agent.compute.resource_tracker.NodeReport
    instances: tuple = ()        # agent.compute.outcomes.InstanceOutcome
    evacuated: tuple = ()        # agent.compute.evacuation.EvacuationOutcome
    unknown_domains: tuple = ()  # agent.compute.outcomes.UnknownDomain
    orphan_nodes: tuple = ()
    dry_run: bool = False
    service: ServiceStatus | None = None

    def as_dry_run(self) -> "Inventory":
        """The same inventory, marked as a dry run's (the lifecycle knows; the host work that
        made it does not)."""
        return dataclasses.replace(self, dry_run=True)

    def as_dict(self) -> dict[str, Any]:
        driver = self.driver
        return {
            "host": self.host,
            "dry_run": self.dry_run,
            "driver": {"name": driver.name, "hypervisor_type": driver.hypervisor_type,
                       "hypervisor_version": driver.hypervisor_version,
                       "warnings": list(driver.warnings)} if driver is not None else None,
            "nodes": [_node(n, self.service) for n in self.nodes],
            "instances": [_instance(i) for i in self.instances],
            "evacuated": [{"instance_uuid": e.instance_uuid, "migration_id": e.migration_id,
                           "action": e.action} for e in self.evacuated],
            "unknown_domains": [{"uuid": d.uuid, "name": d.name,
                                 "power_state": d.power_state} for d in self.unknown_domains],
            "orphan_nodes": list(self.orphan_nodes),
        }


def _node(report, service: ServiceStatus | None) -> dict[str, Any]:
    data = {"hypervisor_hostname": report.hypervisor_hostname, "uuid": report.uuid}
    for name in NODE_FIELDS[2:]:
        data[name] = report.values.get(name)
    data["stats"] = dict(report.stats)
    data["saved"] = report.saved
    data.update(service.node_fields() if service is not None else _NO_SERVICE)
    return data


def _instance(outcome) -> dict[str, Any]:
    data = {"uuid": outcome.uuid, "name": outcome.name, "vm_state": outcome.vm_state,
            "task_state": outcome.task_state, "power_state": outcome.power_state,
            "action": outcome.action}
    if outcome.error:
        data["error"] = outcome.error
    return data


def to_json(report) -> str:
    """One JSON object (sorted keys), newline-terminated."""
    return json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n"


def format_table(report) -> str:
    """A readable report: driver, service, nodes, what start-up did (counts per action, then
    the instances: all of them, or beyond MAX_TABLE_INSTANCES those with an action and how many
    were left out), evacuations and unknown guests. Cells are escaped and kept narrow."""
    data = report.as_dict()
    out: list[str] = []
    if data.get("dry_run"):
        out.append("DRY RUN: the actions below were planned; none was taken.\n")
    driver = data.get("driver") or {}
    rows = [("host", data["host"]),
            ("driver", f"{driver.get('name')} ({driver.get('hypervisor_type')} "
                       f"{version_text(driver.get('hypervisor_version'))})")]
    service = report.service
    if service is not None:
        reason = f" ({service.disabled_reason})" if service.disabled_reason else ""
        rows.append(("service", f"id {service.id} ({service.uuid}), "
                                f"{'disabled' if service.disabled else 'enabled'}{reason}, "
                                f"{'up' if service.up else 'down'}"))
    out.append(pairs(rows))
    for warning in driver.get("warnings") or ():
        out.append(f"  warning: {escape(warning)}\n")
    for node in data["nodes"]:
        out.append("\n" + escape(f"node {node['hypervisor_hostname']} ({node['uuid']}), row "
                                 f"{node['saved']}") + "\n")
        out.append(grid(["", "total", "used", "free"], [
            ["vcpus", node["vcpus"], node["vcpus_used"], _sub(node["vcpus"], node["vcpus_used"])],
            ["memory_mb", node["memory_mb"], node["memory_mb_used"], node["free_ram_mb"]],
            ["local_gb", node["local_gb"], node["local_gb_used"], node["free_disk_gb"]],
        ]))
        out.append(pairs([("running_vms", node["running_vms"]),
                          ("current_workload", node["current_workload"]),
                          ("allocation ratios", f"cpu {node['cpu_allocation_ratio']}, ram "
                                                f"{node['ram_allocation_ratio']}, disk "
                                                f"{node['disk_allocation_ratio']}")]))
    out.append(_instances_table(data["instances"]))
    if data["evacuated"]:
        out.append(f"\nevacuated: {len(data['evacuated'])}\n")
        out.append(grid(["instance_uuid", "migration_id", "action"],
                        [[e["instance_uuid"], e["migration_id"], e["action"]]
                         for e in data["evacuated"]]))
    if data["unknown_domains"]:
        out.append(f"\nguests on the hypervisor unknown to the database: "
                   f"{len(data['unknown_domains'])}\n")
        out.append(grid(["uuid", "name", "power"],
                        [[d["uuid"], d["name"], _POWER_NAMES.get(d["power_state"])]
                         for d in data["unknown_domains"]]))
    if data["orphan_nodes"]:
        out.append("\nnodes in the database the driver no longer reports: "
                   + escape(", ".join(data["orphan_nodes"])) + "\n")
    return "".join(out)


def _instances_table(instances: list[dict]) -> str:
    counts = Counter(i["action"] for i in instances)
    out = [f"\ninstances: {len(instances):,}"
           + (" (" + ", ".join(f"{n:,} {a}" for a, n in sorted(counts.items())) + ")"
              if counts else "") + "\n"]
    listed = instances
    if len(instances) > MAX_TABLE_INSTANCES:
        listed = [i for i in instances if i["action"] != "none"]
    if listed:
        out.append(grid(["uuid", "name", "vm_state", "task_state", "power", "action"],
                        [[i["uuid"], i["name"], i["vm_state"], i["task_state"],
                          _POWER_NAMES.get(i["power_state"], i["power_state"]),
                          i["action"] + (f": {i['error']}" if i.get("error") else "")]
                         for i in listed], widths={"action": 60}))
    left_out = len(instances) - len(listed)
    if left_out:
        were = "it was" if left_out == 1 else "they were"
        out.append(f"({plural(left_out, 'instance')} left as {were} not listed; "
                   "--format json lists every instance)\n")
    return "".join(out)


def _sub(a, b):
    return a - b if isinstance(a, int) and isinstance(b, int) else ""
