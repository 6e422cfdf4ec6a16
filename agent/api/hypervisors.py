"""os-hypervisors: `GET /os-hypervisors`, `/os-hypervisors/detail`, `/os-hypervisors/{id}` from
compute_nodes with their compute service (nova's shapes up to 2.53: `id` and the service's id
are uuids from 2.53; `state` up/down from agent.liveness, `status` enabled/disabled; sizes and
usage as the resource tracker last saved them: vcpus, memory_mb (MiB), local_gb (GiB)). The
lists are paged from 2.33 by agent.api.paging's rules, by node id, as nova pages them.
`GET /os-hypervisors/{id}/uptime` answers 501, as nova for a driver without uptime."""

from __future__ import annotations

import json
import operator

from agent.api import paging
from agent.api.context import Call
from agent.api.faults import ApiError
from agent.api.services import ID_AS_UUID, is_uuid
from agent.db import hypervisor_queries as q
from agent.liveness import Liveness

DETAIL_FIELDS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
                 "local_gb_used", "hypervisor_type", "hypervisor_version", "free_ram_mb",
                 "free_disk_gb", "current_workload", "running_vms", "disk_available_least",
                 "host_ip")
CPU_INFO_AS_OBJECT = (2, 28)
PAGED = (2, 33)  # limit, marker and hypervisors_links
_detail_values = operator.attrgetter(*DETAIL_FIELDS)


def hypervisors(call: Call, rows, db_now, *, with_detail: bool) -> list[dict]:
    """Each (node, service) of hypervisor_queries as nova shows it at the call's version, in
    the rows' order: brief (id, hypervisor_hostname, state, status), or with the sizes, usage,
    cpu_info and service. One Liveness judges every service at `db_now`."""
    if not rows:
        return []
    is_up = Liveness(db_now, call.service_down_time).is_up
    as_uuid = call.version.at_least(*ID_AS_UUID)
    cpu_info = _CpuInfo(call.version.at_least(*CPU_INFO_AS_OBJECT))
    result = []
    for node, service in rows:
        up = is_up(service.forced_down, service.last_seen_up, service.created_at)
        entry = {"id": node.uuid if as_uuid else node.id,
                 "hypervisor_hostname": node.hypervisor_hostname,
                 "state": "up" if up else "down",
                 "status": "disabled" if service.disabled else "enabled"}
        if with_detail:
            entry.update(zip(DETAIL_FIELDS, _detail_values(node)))
            entry["cpu_info"] = cpu_info(node.cpu_info)
            entry["service"] = {"host": service.host,
                                "id": service.uuid if as_uuid else service.id,
                                "disabled_reason": service.disabled_reason}
        result.append(entry)
    return result


class _CpuInfo:
    """cpu_info as the version shows it: the stored text below 2.28, from 2.28 the JSON object
    ({} when the text is not one). A fleet of one hardware model stores one text many times:
    each distinct text is parsed once per request (the parsed objects are only serialized)."""

    def __init__(self, as_object: bool):
        self.as_object = as_object
        self.parsed: dict[str, dict] = {}

    def __call__(self, text: str | None):
        if not self.as_object:
            return text or ""
        if not text:
            return {}
        value = self.parsed.get(text)
        if value is None:
            try:
                value = json.loads(text)
            except ValueError:
                value = {}
            self.parsed[text] = value = value if isinstance(value, dict) else {}
        return value


def list_hypervisors(call: Call) -> tuple[int, dict]:
    return 200, _listed(call, "os-hypervisors", with_detail=False)


def list_detail(call: Call) -> tuple[int, dict]:
    return 200, _listed(call, "os-hypervisors/detail", with_detail=True)


def _listed(call: Call, collection: str, *, with_detail: bool) -> dict:
    """Every hypervisor below 2.33 (nova pages them from 2.33); from 2.33 a page of `limit`
    (at most [api] max_limit) after `marker` (an id, from 2.53 a uuid; nova takes either at
    any version), with `hypervisors_links`. One SELECT either way."""
    if not call.version.at_least(*PAGED):
        db_now, rows = q.list_nodes_with_services(call.session)
        return {"hypervisors": hypervisors(call, rows, db_now, with_detail=with_detail)}
    page = paging.requested_page(call, single=call.version.at_least(*ID_AS_UUID))
    found = q.list_nodes_with_services(call.session, limit=page.size, after=page.marker)
    return paging.page_answer(call, "hypervisors", collection, page, found,
                              lambda read: hypervisors(call, read[1], read[0],
                                                       with_detail=with_detail))


def show(call: Call, hypervisor_id: str) -> tuple[int, dict]:
    db_now, rows = _load(call, hypervisor_id)
    return 200, {"hypervisor": hypervisors(call, rows, db_now, with_detail=True)[0]}


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
