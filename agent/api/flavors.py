"""flavors: `GET /flavors`, `GET /flavors/detail`, `GET /flavors/{flavorid}` (nova's shapes up
to 2.53: swap "" when 0, the OS-FLV-* and os-flavor-access extension keys, self and bookmark
links; no extra specs). Reads through agent.control.flavors."""

from __future__ import annotations

from agent.api.context import Call
from agent.api.faults import ApiError
from agent.control import flavors as control
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
    return 200, {"flavors": [brief(call, f) for f in control.list_flavors(call.session)]}


def list_detail(call: Call) -> tuple[int, dict]:
    return 200, {"flavors": [detail(call, f) for f in control.list_flavors(call.session)]}


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
