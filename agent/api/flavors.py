"""flavors: `GET /flavors`, `GET /flavors/detail`, `GET /flavors/{flavorid}` (nova's shapes up
to 2.53: swap "" when 0, the OS-FLV-* and os-flavor-access extension keys, self and bookmark
links; no extra specs). Reads through agent.control.flavors; the lists are paged by
agent.api.paging's rules in nova's default order, flavorid ascending."""

from __future__ import annotations

from agent.api import paging
from agent.api.context import Call
from agent.api.faults import ApiError
from agent.control import flavors as control
from agent.db import flavor_queries
from agent.db.flavor_queries import FlavorRecord


def _links(call: Call, flavorid: str) -> list[dict]:
    return [{"rel": "self", "href": f"{call.base_url}/v2.1/flavors/{flavorid}"},
            {"rel": "bookmark", "href": f"{call.base_url}/flavors/{flavorid}"}]


def brief(call: Call, flavor: FlavorRecord) -> dict:
    return {"id": flavor.flavorid, "name": flavor.name,
            "links": _links(call, flavor.flavorid)}


def detail(call: Call, flavor: FlavorRecord) -> dict:
    """One flavor as nova's detail shows it: ram and swap in MiB, disk and ephemeral in GiB."""
    return {**brief(call, flavor), "ram": flavor.memory_mb, "vcpus": flavor.vcpus,
            "disk": flavor.root_gb, "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
            "swap": flavor.swap or "", "rxtx_factor": flavor.rxtx_factor,
            "os-flavor-access:is_public": flavor.is_public,
            "OS-FLV-DISABLED:disabled": flavor.disabled}


def list_flavors(call: Call) -> tuple[int, dict]:
    return 200, _listed(call, "flavors", brief)


def list_detail(call: Call) -> tuple[int, dict]:
    return 200, _listed(call, "flavors/detail", detail)


def _listed(call: Call, collection: str, view) -> dict:
    """A page of flavors in nova's default order (flavorid ascending) after `marker` (a
    flavorid), with `flavors_links`: agent.api.paging's rules, one SELECT."""
    page = paging.requested_page(call)
    found = flavor_queries.page_flavors(call.session, page.size, page.marker)
    return paging.page_answer(call, "flavors", collection, page, found,
                              lambda flavors: [view(call, flavor) for flavor in flavors])


def show(call: Call, flavorid: str) -> tuple[int, dict]:
    """By flavorid only, as nova (a name is found by the clients through the list)."""
    return 200, {"flavor": detail(call, _find(call, flavorid))}


def extra_specs(call: Call, flavorid: str) -> tuple[int, dict]:
    """The agent's flavors carry no extra specs (openstackclient's `flavor show` reads them)."""
    _find(call, flavorid)
    return 200, {"extra_specs": {}}


def _find(call: Call, flavorid: str) -> FlavorRecord:
    for flavor in control.list_flavors(call.session):
        if flavor.flavorid == flavorid:
            return flavor
    raise ApiError(404, f"Flavor {flavorid} could not be found.")


ROUTES = (
    ("GET", r"/flavors", list_flavors),
    ("GET", r"/flavors/detail", list_detail),
    ("GET", r"/flavors/(?P<flavorid>[^/]+)", show),
    ("GET", r"/flavors/(?P<flavorid>[^/]+)/os-extra_specs", extra_specs),
)
