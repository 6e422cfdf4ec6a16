"""os-hypervisors: `GET /os-hypervisors`, `/os-hypervisors/detail`, `/os-hypervisors/{id}` from
compute_nodes with their compute service (nova's shapes up to 2.53: `id` and the service's id
are uuids from 2.53; `state` up/down from agent.liveness, `status` enabled/disabled; sizes and
usage as the resource tracker last saved them: vcpus, memory_mb (MiB), local_gb (GiB)).
`GET /os-hypervisors/{id}/uptime` answers 501, as nova for a driver without uptime."""

from __future__ import annotations

import json

from agent.api.context import Call
from agent.api.faults import ApiError
from agent.api.services import ID_AS_UUID, is_uuid
from agent.db import hypervisor_queries as q
from agent.db.records import NodeRecord
from agent.liveness import state_of

DETAIL_FIELDS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
                 "local_gb_used", "hypervisor_type", "hypervisor_version", "free_ram_mb",
                 "free_disk_gb", "current_workload", "running_vms", "disk_available_least",
                 "host_ip")
CPU_INFO_AS_OBJECT = (2, 28)


def brief(call: Call, node: NodeRecord, service, db_now) -> dict:
    as_uuid = call.version.at_least(*ID_AS_UUID)
    return {"id": node.uuid if as_uuid else node.id,
            "hypervisor_hostname": node.hypervisor_hostname,
            "state": "up" if state_of(service, db_now, call.service_down_time).up else "down",
            "status": "disabled" if service.disabled else "enabled"}


def detail(call: Call, node: NodeRecord, service, db_now) -> dict:
    as_uuid = call.version.at_least(*ID_AS_UUID)
    result = brief(call, node, service, db_now)
    result.update({f: getattr(node, f) for f in DETAIL_FIELDS})
    result["cpu_info"] = _cpu_info(call, node.cpu_info)
    result["service"] = {"host": service.host, "id": service.uuid if as_uuid else service.id,
                         "disabled_reason": service.disabled_reason}
    return result


def _cpu_info(call: Call, text: str | None):
    if not call.version.at_least(*CPU_INFO_AS_OBJECT):
        return text or ""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def list_hypervisors(call: Call) -> tuple[int, dict]:
    db_now, rows = q.list_nodes_with_services(call.session)
    return 200, {"hypervisors": [brief(call, n, s, db_now) for n, s in rows]}


def list_detail(call: Call) -> tuple[int, dict]:
    db_now, rows = q.list_nodes_with_services(call.session)
    return 200, {"hypervisors": [detail(call, n, s, db_now) for n, s in rows]}


def show(call: Call, hypervisor_id: str) -> tuple[int, dict]:
    db_now, rows = _load(call, hypervisor_id)
    node, service = rows[0]
    return 200, {"hypervisor": detail(call, node, service, db_now)}


def uptime(call: Call, hypervisor_id: str) -> tuple[int, dict]:
    _load(call, hypervisor_id)
    raise ApiError(501, "Virt driver does not implement host uptime function.")


def _load(call: Call, hypervisor_id: str):
    if call.version.at_least(*ID_AS_UUID):
        if not is_uuid(hypervisor_id):
            raise ApiError(400, f"Invalid uuid {hypervisor_id}")
        found = q.list_nodes_with_services(call.session, node_uuid=hypervisor_id)
    else:
        if not hypervisor_id.isascii() or not hypervisor_id.isdigit() or len(hypervisor_id) > 18:
            raise ApiError(400, f"Invalid ID {hypervisor_id}: an integer is expected "
                                "(hypervisor ids are uuids from microversion 2.53)")
        found = q.list_nodes_with_services(call.session, node_id=int(hypervisor_id))
    if not found[1]:
        raise ApiError(404, f"Hypervisor with ID '{hypervisor_id}' could not be found.")
    return found


ROUTES = (
    ("GET", r"/os-hypervisors", list_hypervisors),
    ("GET", r"/os-hypervisors/detail", list_detail),
    ("GET", r"/os-hypervisors/(?P<hypervisor_id>[^/]+)", show),
    ("GET", r"/os-hypervisors/(?P<hypervisor_id>[^/]+)/uptime", uptime),
)
