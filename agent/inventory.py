"""The host inventory that `agent --once` prints: a readable table, or the JSON object of
DESIGN.md ("Contracts that other tools rely on").
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

NODE_FIELDS = ("hypervisor_hostname", "uuid", "vcpus", "vcpus_used", "memory_mb",
               "memory_mb_used", "free_ram_mb", "local_gb", "local_gb_used", "free_disk_gb",
               "disk_available_least", "running_vms", "current_workload", "hypervisor_type",
               "hypervisor_version", "host_ip", "cpu_allocation_ratio", "ram_allocation_ratio",
               "disk_allocation_ratio")
_POWER_NAMES = {0: "nostate", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed",
                7: "suspended"}


@dataclass(frozen=True)
class Inventory:
    host: str
    driver: Any  # agent.virt.types.DriverInfo
    nodes: tuple = ()            # agent.compute.resource_tracker.NodeReport
    instances: tuple = ()        # agent.compute.manager.InstanceOutcome
    evacuated: tuple = ()        # agent.compute.evacuation.EvacuationOutcome
    unknown_domains: tuple = ()  # agent.compute.manager.UnknownDomain
    orphan_nodes: tuple = ()
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        driver = self.driver
        return {
            "host": self.host,
            "dry_run": self.dry_run,
            "driver": {"name": driver.name, "hypervisor_type": driver.hypervisor_type,
                       "hypervisor_version": driver.hypervisor_version,
                       "warnings": list(driver.warnings)} if driver is not None else None,
            "nodes": [_node(n) for n in self.nodes],
            "instances": [_instance(i) for i in self.instances],
            "evacuated": [{"instance_uuid": e.instance_uuid, "migration_id": e.migration_id,
                           "action": e.action} for e in self.evacuated],
            "unknown_domains": [{"uuid": d.uuid, "name": d.name,
                                 "power_state": d.power_state} for d in self.unknown_domains],
            "orphan_nodes": list(self.orphan_nodes),
        }


def _node(report) -> dict[str, Any]:
    data = {"hypervisor_hostname": report.hypervisor_hostname, "uuid": report.uuid}
    for name in NODE_FIELDS[2:]:
        data[name] = report.values.get(name)
    data["stats"] = dict(report.stats)
    data["saved"] = report.saved
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
    """A readable report: driver, nodes, what start-up did (counts per action, then every
    instance that was not left as it was), evacuations and unknown guests."""
    data = report.as_dict()
    out: list[str] = []
    if data.get("dry_run"):
        out.append("DRY RUN: the actions below were planned; none was taken.\n")
    driver = data.get("driver") or {}
    out.append(_pairs([("host", data["host"]),
                       ("driver", f"{driver.get('name')} ({driver.get('hypervisor_type')} "
                                  f"{driver.get('hypervisor_version')})")]))
    for warning in driver.get("warnings") or ():
        out.append(f"  warning: {warning}\n")
    for node in data["nodes"]:
        out.append(f"\nnode {node['hypervisor_hostname']} ({node['uuid']}), row {node['saved']}\n")
        out.append(_grid(["", "total", "used", "free"], [
            ["vcpus", node["vcpus"], node["vcpus_used"], _sub(node["vcpus"], node["vcpus_used"])],
            ["memory_mb", node["memory_mb"], node["memory_mb_used"], node["free_ram_mb"]],
            ["local_gb", node["local_gb"], node["local_gb_used"], node["free_disk_gb"]],
        ]))
        out.append(_pairs([("running_vms", node["running_vms"]),
                           ("current_workload", node["current_workload"]),
                           ("allocation ratios", f"cpu {node['cpu_allocation_ratio']}, ram "
                                                 f"{node['ram_allocation_ratio']}, disk "
                                                 f"{node['disk_allocation_ratio']}")]))
    instances = data["instances"]
    counts = Counter(i["action"] for i in instances)
    out.append(f"\ninstances: {len(instances)}"
               + (" (" + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) + ")"
                  if counts else "") + "\n")
    changed = [i for i in instances if i["action"] != "none"]
    if changed:
        out.append(_grid(["uuid", "name", "vm_state", "task_state", "power", "action"],
                         [[i["uuid"], i["name"], i["vm_state"], i["task_state"] or "-",
                           _POWER_NAMES.get(i["power_state"], i["power_state"]),
                           i["action"] + (f": {i['error']}" if i.get("error") else "")]
                          for i in changed]))
    if data["evacuated"]:
        out.append(f"\nevacuated: {len(data['evacuated'])}\n")
        out.append(_grid(["instance_uuid", "migration_id", "action"],
                         [[e["instance_uuid"], e["migration_id"], e["action"]]
                          for e in data["evacuated"]]))
    if data["unknown_domains"]:
        out.append(f"\nguests on the hypervisor unknown to the database: "
                   f"{len(data['unknown_domains'])}\n")
        out.append(_grid(["uuid", "name", "power"],
                         [[d["uuid"], d["name"], _POWER_NAMES.get(d["power_state"])]
                          for d in data["unknown_domains"]]))
    if data["orphan_nodes"]:
        out.append("\nnodes in the database the driver no longer reports: "
                   + ", ".join(data["orphan_nodes"]) + "\n")
    return "".join(out)


def _sub(a, b):
    return a - b if isinstance(a, int) and isinstance(b, int) else ""


def _pairs(rows) -> str:
    width = max(len(str(name)) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)


def _grid(header, rows) -> str:
    table = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                   for r in table)
