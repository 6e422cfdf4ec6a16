"""servers: `GET /servers`, `/servers/detail`, `/servers/{id}` (nova's shapes up to 2.53),
`POST /servers/{id}/action` with os-stop, os-start, reboot (SOFT/HARD), pause and unpause
(202), `DELETE /servers/{id}` (204), `POST /servers` (202: scheduled and cast, or saved in
ERROR with its fault when no host fits, as nova answers before it schedules). The state
rules, saves and casts are agent.control.servers' (the same code as `agent server`); the
casts leave after the request's transaction committed, with the request's id and the
caller's global request id in their context. Servers are found by uuid only, as nova: any
other id is 404. Create accepts what openstackclient sends with `--image` (imageRef and a
block_device_mapping_v2 of that image as the local boot disk); the mapping is not kept."""

from __future__ import annotations

import datetime as dt
import json
import uuid as uuidlib

from agent import vocabulary as states
from agent.api import paging
from agent.api.context import Call, schema_object, string_field
from agent.api.faults import ApiError
from agent.control import errors as e
from agent.control import flavors as flavor_control
from agent.control import servers as control
from agent.db import server_queries
from agent.db.records import InstanceRecord
from agent.vocabulary import server_status as status

# The body key of each action and the control plane's name for it.
ACTIONS = {"os-stop": "stop", "os-start": "start", "pause": "pause", "unpause": "unpause"}
REBOOT_TYPES = {"SOFT": "reboot", "HARD": "reboot-hard"}


def _time(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _links(call: Call, uuid: str) -> list[dict]:
    return [{"rel": "self", "href": f"{call.base_url}/v2.1/servers/{uuid}"},
            {"rel": "bookmark", "href": f"{call.base_url}/servers/{uuid}"}]


def brief(call: Call, server: InstanceRecord) -> dict:
    return {"id": server.uuid, "name": server.display_name, "links": _links(call, server.uuid)}


def _flavor(call: Call, server: InstanceRecord) -> dict:
    """The server's flavor as nova shows it: below 2.47 its id with a bookmark link; from 2.47
    the flavor the instance was built with, embedded (`vcpus`, `ram` in MiB, `disk` and
    `ephemeral` in GiB, `swap` in MiB, `original_name`, and `extra_specs`, which the agent's
    flavors never have), with no id: the flavor may have been deleted or changed since."""
    flavor = json.loads(server.flavor) if server.flavor else {}
    if call.version.at_least(2, 47):
        return {"vcpus": flavor.get("vcpus"), "ram": flavor.get("memory_mb"),
                "disk": flavor.get("root_gb"), "ephemeral": flavor.get("ephemeral_gb"),
                "swap": flavor.get("swap"), "original_name": flavor.get("name"),
                "extra_specs": {}}
    flavorid = flavor.get("flavorid")
    return {"id": flavorid, "links": [{"rel": "bookmark",
                                       "href": f"{call.base_url}/flavors/{flavorid}"}]}


def detail(call: Call, server: InstanceRecord) -> dict:
    """One server as nova's detail view shows it: the flavor as `_flavor` says (by id below
    2.47, embedded from 2.47), the image by id with a bookmark link (image "" when none), no
    addresses (the agent has no networking), the admin's OS-EXT-* keys, times in UTC.
    `updated` is the newest of created, launched and terminated (the agent keeps no updated_at
    on this record)."""
    image = ({"id": server.image_ref,
              "links": [{"rel": "bookmark", "href": f"{call.base_url}/images/"
                                                    f"{server.image_ref}"}]}
             if server.image_ref else "")
    times = [t for t in (server.created_at, server.launched_at, server.terminated_at) if t]
    return {
        **brief(call, server),
        "status": status(server.vm_state, server.task_state),
        "tenant_id": server.project_id, "user_id": server.user_id,
        "created": _time(server.created_at), "updated": _time(max(times) if times else None),
        "flavor": _flavor(call, server),
        "image": image, "addresses": {}, "metadata": {},
        "hostId": "", "accessIPv4": "", "accessIPv6": "",
        "OS-EXT-STS:vm_state": server.vm_state, "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:power_state": server.power_state,
        "OS-EXT-SRV-ATTR:host": server.host,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": server.node,
        "OS-EXT-SRV-ATTR:instance_name": "",
        "OS-EXT-AZ:availability_zone": states.COMPUTE_ZONE,
        "OS-SRV-USG:launched_at": _time(server.launched_at),
        "OS-SRV-USG:terminated_at": _time(server.terminated_at),
        "OS-DCF:diskConfig": "MANUAL", "config_drive": "", "key_name": None,
        "progress": 0, "security_groups": [], "os-extended-volumes:volumes_attached": [],
    }


def find(call: Call, server_id: str) -> InstanceRecord:
    """The live server whose uuid is `server_id`; ApiError 404 as nova's otherwise (a name
    or a malformed id included)."""
    try:
        uuidlib.UUID(server_id)
        server = control.find_server(call.session, server_id)
    except (ValueError, e.InstanceNotFound, e.AmbiguousName):
        server = None
    if server is None or server.uuid != server_id:
        raise ApiError(404, f"Instance {server_id} could not be found.")
    return server


def list_servers(call: Call) -> tuple[int, dict]:
    return 200, _listed(call, "servers", brief)


def list_detail(call: Call) -> tuple[int, dict]:
    return 200, _listed(call, "servers/detail", detail)


def _listed(call: Call, collection: str, view) -> dict:
    """A page of live servers in nova's default order (created_at, then id, newest first)
    after `marker` (a server uuid; a deleted server's too, as nova), with `servers_links`:
    agent.api.paging's rules, one SELECT."""
    page = paging.requested_page(call)
    found = server_queries.page_servers(call.session, page.size, page.marker)
    return paging.page_answer(call, "servers", collection, page, found,
                              lambda servers: [view(call, server) for server in servers])


def show(call: Call, server_id: str) -> tuple[int, dict]:
    return 200, {"server": detail(call, find(call, server_id))}


# nova's server create keys the agent accepts; those it has no part for (networks, keys,
# metadata, ...) are ignored, as nova ignores them when the service behind them is absent.
CREATE_KEYS = ("name", "flavorRef", "imageRef", "networks", "min_count", "max_count",
               "metadata", "security_groups", "key_name", "user_data", "config_drive",
               "availability_zone", "description", "OS-DCF:diskConfig", "adminPass",
               "block_device_mapping_v2")


def create(call: Call) -> tuple[int, dict]:
    """POST /servers with `{"server": {"name", "flavorRef" (a flavor id or its URL),
    "imageRef"?}}`: 202 with the new server's id and links. A flavor that is not an id: 400
    `Flavor X could not be found.`; a body outside nova's schema: 400."""
    if not call.can_cast:
        raise ApiError(503, "The API has no transport_url: it cannot ask compute hosts to "
                            "build servers.")
    outer = call.object_body("server", required=("server",))
    body = schema_object(outer["server"], "server", "The server", CREATE_KEYS,
                         ("name", "flavorRef"))
    name = string_field(body, "name")
    ref = string_field(body, "flavorRef").rstrip("/").rsplit("/", 1)[-1]
    image = string_field(body, "imageRef") if body.get("imageRef") else None
    try:
        if flavor_control.find_flavor(call.session, ref).flavorid != ref:
            raise e.FlavorNotFound(ref)
        outcome = control.create_server(
            call.session, name, ref, service_down_time=call.service_down_time,
            image_ref=image, request_id=call.request_id,
            global_request_id=call.global_request_id)
    except e.FlavorNotFound:
        raise ApiError(400, f"Flavor {ref} could not be found.") from None
    if outcome.cast is not None:
        call.casts.append(outcome.cast)
    return 202, {"server": {"id": outcome.server.uuid,
                            "links": _links(call, outcome.server.uuid),
                            "OS-DCF:diskConfig": "MANUAL",
                            "security_groups": [{"name": "default"}]}}


def action_name(body) -> str:
    """The control plane's action for a server action body: {"os-stop": null} -> 'stop',
    {"reboot": {"type": "HARD"}} -> 'reboot-hard'; ApiError 400 with nova's message for any
    other body (none or several actions, an unknown one, a reboot without a valid type)."""
    if not isinstance(body, dict) or len(body) != 1:
        raise ApiError(400, "Malformed request body")
    [(key, value)] = body.items()
    if key in ACTIONS:
        return ACTIONS[key]
    if key != "reboot":
        raise ApiError(400, f"There is no such action: {key[:60]}")
    if not isinstance(value, dict) or "type" not in value:
        raise ApiError(400, "Invalid input for field/attribute reboot. 'type' is a required "
                            "property")
    unknown = sorted(set(value) - {"type"})
    if unknown:
        raise ApiError(400, "Additional properties are not allowed ("
                            + ", ".join(repr(k) for k in unknown) + " was unexpected)")
    kind = value["type"]
    if not isinstance(kind, str) or kind.upper() not in REBOOT_TYPES or kind not in (
            kind.upper(), kind.lower(), kind.capitalize()):
        raise ApiError(400, f"Invalid input for field/attribute type. Value: {kind!r}. "
                            f"{kind!r} is not one of ['HARD', 'Hard', 'hard', 'SOFT', "
                            "'Soft', 'soft']")
    return REBOOT_TYPES[kind.upper()]


def _act(call: Call, server_id: str, action: str) -> None:
    if not call.can_cast:
        raise ApiError(503, "The API has no transport_url: it cannot ask compute hosts to "
                            "act on servers.")
    find(call, server_id)
    try:
        outcome = control.act(call.session, server_id, action, request_id=call.request_id,
                              global_request_id=call.global_request_id,
                              service_down_time=call.service_down_time)
    except e.InstanceNotReady as exc:
        raise ApiError(exc.http_status, str(exc)) from None
    except e.InstanceInvalidState as exc:
        raise ApiError(409, f"Cannot '{exc.action}' instance {exc.uuid} while it is in "
                            f"{exc.attr} {exc.state}") from None
    except e.InstanceChanged as exc:
        raise ApiError(409, f"Instance {exc.uuid} changed meanwhile ({exc.column} is now "
                            f"{exc.found}); retry.") from None
    if outcome.cast is not None:
        call.casts.append(outcome.cast)


def server_action(call: Call, server_id: str) -> tuple[int, None]:
    """POST /servers/{id}/action: 202 once saved and cast; 409 in a state nova refuses the
    action in; 404 for an unknown server; 400 for a malformed body."""
    action = action_name(call.body)
    _act(call, server_id, action)
    return 202, None


def delete(call: Call, server_id: str) -> tuple[int, None]:
    """DELETE /servers/{id}: 204. A server without a host, or whose host is down, is deleted
    at once (nova's local delete); one already deleting on a host that is up is left alone;
    otherwise its host is asked to terminate it."""
    _act(call, server_id, "delete")
    return 204, None


ROUTES = (
    ("GET", r"/servers", list_servers),
    ("POST", r"/servers", create),
    ("GET", r"/servers/detail", list_detail),
    ("GET", r"/servers/(?P<server_id>[^/]+)", show),
    ("DELETE", r"/servers/(?P<server_id>[^/]+)", delete),
    ("POST", r"/servers/(?P<server_id>[^/]+)/action", server_action),
)
