"""servers and os-instance-actions through the WSGI application on every backend, casting
through a real RabbitMQ (a vhost of the module's own): nova's status per state, each action's
allowed states (202 and the cast in the host's queue, or 409 with nova's message and nothing
sent), the caller's X-OpenStack-Request-ID in the cast's context and the action recorded
under the request id the API answered with."""

from __future__ import annotations

import json
import uuid

import pytest
from werkzeug.test import Client

from agent import vocabulary as states
from agent.api.app import ApiApp
from agent.api.servers import status
from agent.control.flavors import list_flavors
from agent.db import server_queries as q
from agent.rpc import wire
from agent.rpc.client import RpcClient
from agent.rpc.transport import parse
from tests.functional.test_api_services import NEW, add_service, call
from tests.functional.test_rpc_client import get_one, host_queue
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)

GLOBAL_ID = f"req-{uuid.uuid4()}"


@pytest.fixture
def env(any_db, rabbit_vhost):
    transport = parse(rabbit_vhost[1])
    conn = transport.connection()
    with RpcClient(transport) as caster:
        api = Client(ApiApp(any_db.sessions, service_down_time=60,
                            server_clock=any_db.engine.dialect.name != "sqlite",
                            caster=caster))
        yield api, any_db, conn
    conn.release()


def add_server(db, host, vm_state, task_state=None, name="vm"):
    flavor = json.dumps({"flavorid": "f1", "name": "small", "vcpus": 1, "memory_mb": 512,
                         "root_gb": 1, "ephemeral_gb": 0, "swap": 0})
    with db.sessions.begin() as session:
        return q.insert_server(
            session, uuid=str(uuid.uuid4()), display_name=name, host=host, node=host,
            vm_state=vm_state, task_state=task_state, power_state=1, vcpus=1, memory_mb=512,
            root_gb=1, ephemeral_gb=0, swap=0, flavor=flavor, image_ref="img-1",
            user_id="u1", project_id="p1")


@pytest.mark.parametrize("vm_state, task_state, expected", [
    (states.ACTIVE, None, "ACTIVE"), (states.ACTIVE, states.POWERING_OFF, "ACTIVE"),
    (states.ACTIVE, states.REBOOTING, "REBOOT"),
    (states.ACTIVE, states.REBOOTING_HARD, "HARD_REBOOT"),
    (states.STOPPED, None, "SHUTOFF"), (states.PAUSED, None, "PAUSED"),
    (states.BUILDING, states.SCHEDULING, "BUILD"), (states.ERROR, None, "ERROR"),
    (states.DELETED, None, "DELETED"), (states.STOPPED, states.REBUILDING, "REBUILD"),
    ("nonsense", None, "UNKNOWN"),
])
def test_status_is_novas(vm_state, task_state, expected):
    assert status(vm_state, task_state) == expected


def test_list_detail_show(env):
    api, db, _ = env
    host = unique_host()
    server = add_server(db, host, states.ACTIVE, states.REBOOTING_HARD, name="web")
    _, body = call(api, "GET", "/v2.1/servers", headers=NEW)
    assert [(s["id"], s["name"]) for s in body["servers"]] == [(server.uuid, "web")]
    _, body = call(api, "GET", "/v2.1/p1/servers/detail", headers=NEW)
    [entry] = body["servers"]
    assert (entry["status"], entry["OS-EXT-STS:vm_state"], entry["OS-EXT-STS:task_state"],
            entry["OS-EXT-STS:power_state"], entry["OS-EXT-SRV-ATTR:host"],
            entry["OS-EXT-SRV-ATTR:hypervisor_hostname"], entry["flavor"],
            entry["image"]["id"], entry["tenant_id"], entry["user_id"],
            entry["addresses"]) == (
        "HARD_REBOOT", "active", "rebooting_hard", 1, host, host,
        {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "small",
         "extra_specs": {}}, "img-1", "p1", "u1", {})
    assert entry["created"].endswith("Z")
    response, body = call(api, "GET", f"/v2.1/servers/{server.uuid}", headers=NEW)
    assert response.status_code == 200 and body["server"] == entry


@pytest.mark.parametrize("version", ["2.1", "2.46"])
def test_flavor_is_an_id_below_2_47(env, version):
    """Below 2.47 nova shows the flavor by id and link (the clients then look its name up);
    from 2.47 embedded, as test_list_detail_show checks."""
    api, db, _ = env
    server = add_server(db, unique_host(), states.ACTIVE)
    _, body = call(api, "GET", f"/v2.1/servers/{server.uuid}",
                   headers={"X-OpenStack-Nova-API-Version": version})
    assert body["server"]["flavor"]["id"] == "f1"
    assert body["server"]["flavor"]["links"][0]["href"].endswith("/flavors/f1")


@pytest.mark.parametrize("path", ["/v2.1/servers/{missing}", "/v2.1/servers/web",
                                  "/v2.1/servers/nope"])
def test_show_unknown_is_404(env, path):
    api, db, _ = env
    add_server(db, unique_host(), states.ACTIVE, name="web")
    missing = str(uuid.uuid4())
    response, body = call(api, "GET", path.replace("{missing}", missing), headers=NEW)
    assert response.status_code == 404
    assert "could not be found" in body["itemNotFound"]["message"]


# (body, vm_state, task_state, expected code, RPC method or nova's 409 message part)
ACTIONS = [
    ({"os-stop": None}, states.ACTIVE, None, 202, "stop_instance"),
    ({"os-stop": None}, states.ERROR, None, 202, "stop_instance"),
    ({"os-stop": None}, states.STOPPED, None, 409, "while it is in vm_state stopped"),
    ({"os-stop": None}, states.ACTIVE, states.PAUSING, 409, "in task_state pausing"),
    ({"os-start": None}, states.STOPPED, None, 202, "start_instance"),
    ({"os-start": None}, states.ACTIVE, None, 409, "Cannot 'start' instance"),
    ({"reboot": {"type": "SOFT"}}, states.ACTIVE, None, 202, "reboot_instance"),
    ({"reboot": {"type": "SOFT"}}, states.STOPPED, None, 409, "Cannot 'reboot'"),
    ({"reboot": {"type": "HARD"}}, states.STOPPED, None, 202, "reboot_instance"),
    ({"reboot": {"type": "hard"}}, states.ACTIVE, states.REBOOTING, 202, "reboot_instance"),
    ({"reboot": {"type": "HARD"}}, states.BUILDING, None, 409, "vm_state building"),
    ({"pause": None}, states.ACTIVE, None, 202, "pause_instance"),
    ({"pause": None}, states.PAUSED, None, 409, "Cannot 'pause'"),
    ({"unpause": None}, states.PAUSED, None, 202, "unpause_instance"),
    ({"unpause": None}, states.ACTIVE, None, 409, "Cannot 'unpause'"),
]


@pytest.mark.parametrize("body, vm_state, task_state, code, expected", ACTIONS,
                         ids=[f"{next(iter(a[0]))}-{a[1]}-{a[2]}-{a[3]}" for a in ACTIONS])
def test_actions_follow_novas_state_rules(env, body, vm_state, task_state, code, expected):
    api, db, conn = env
    host = unique_host()
    queue = host_queue(conn, host)
    server = add_server(db, host, vm_state, task_state)
    headers = {**NEW, "X-OpenStack-Request-ID": GLOBAL_ID}
    response, fault = call(api, "POST", f"/v2.1/servers/{server.uuid}/action", body,
                           headers=headers)
    assert response.status_code == code, fault
    _, shown = call(api, "GET", f"/v2.1/servers/{server.uuid}", headers=NEW)
    if code == 409:
        assert expected in fault["conflictingRequest"]["message"]
        assert server.uuid in fault["conflictingRequest"]["message"]
        assert shown["server"]["OS-EXT-STS:task_state"] == task_state  # nothing written
        assert get_one(queue, 0.3) is None
        return
    request_id = response.headers["x-openstack-request-id"]
    message = get_one(queue)
    assert message is not None
    request = wire.decode_request(message.body)
    assert request.method == expected
    assert (request.context.request_id, request.context.global_request_id) == (
        request_id, GLOBAL_ID)
    if expected == "reboot_instance":
        assert request.args["reboot_type"] == body["reboot"]["type"].upper()
    assert shown["server"]["OS-EXT-STS:task_state"] not in (None, task_state)
    _, listed = call(api, "GET", f"/v2.1/servers/{server.uuid}/os-instance-actions",
                     headers=NEW)
    assert [a["request_id"] for a in listed["instanceActions"]] == [request_id]
    response, action = call(api, "GET",
                            f"/v2.1/servers/{server.uuid}/os-instance-actions/{request_id}",
                            headers=NEW)
    assert response.status_code == 200
    assert (action["instanceAction"]["action"], action["instanceAction"]["events"]) == (
        request.method.split("_")[0], [])


@pytest.mark.parametrize("body, message", [
    ({"reboot": {"type": "WARM"}}, "is not one of"),
    ({"reboot": {}}, "'type' is a required property"),
    ({"resize": None}, "There is no such action: resize"),
    ({"os-stop": None, "pause": None}, "Malformed request body"),
    ([], "Malformed request body"),
])
def test_malformed_action_is_400_and_changes_nothing(env, body, message):
    api, db, conn = env
    host = unique_host()
    queue = host_queue(conn, host)
    server = add_server(db, host, states.ACTIVE)
    response, fault = call(api, "POST", f"/v2.1/servers/{server.uuid}/action", body,
                           headers=NEW)
    assert response.status_code == 400
    assert message in fault["badRequest"]["message"]
    assert get_one(queue, 0.3) is None


def test_action_on_unknown_server_is_404(env):
    api, _, _ = env
    missing = str(uuid.uuid4())
    response, fault = call(api, "POST", f"/v2.1/servers/{missing}/action", {"os-stop": None},
                           headers=NEW)
    assert response.status_code == 404
    assert fault["itemNotFound"]["message"] == f"Instance {missing} could not be found."


def test_delete_casts_terminate_and_a_hostless_server_goes_at_once(env):
    api, db, conn = env
    host = unique_host()
    add_service(db, host)  # up: a down or unknown host's instance is deleted locally
    queue = host_queue(conn, host)
    server = add_server(db, host, states.ACTIVE)
    response, _ = call(api, "DELETE", f"/v2.1/servers/{server.uuid}", headers=NEW)
    assert response.status_code == 204
    message = get_one(queue)
    assert message is not None
    assert wire.decode_request(message.body).method == "terminate_instance"
    hostless = add_server(db, None, states.ERROR)
    response, _ = call(api, "DELETE", f"/v2.1/servers/{hostless.uuid}", headers=NEW)
    assert response.status_code == 204
    response, _ = call(api, "GET", f"/v2.1/servers/{hostless.uuid}", headers=NEW)
    assert response.status_code == 404
    _, listed = call(api, "GET", f"/v2.1/servers/{hostless.uuid}/os-instance-actions",
                     headers=NEW)
    assert [a["action"] for a in listed["instanceActions"]] == ["delete"]


def test_unknown_action_request_id_is_404(env):
    api, db, _ = env
    server = add_server(db, unique_host(), states.ACTIVE)
    response, fault = call(api, "GET",
                           f"/v2.1/servers/{server.uuid}/os-instance-actions/req-nope",
                           headers=NEW)
    assert response.status_code == 404
    assert "Action for request_id req-nope" in fault["itemNotFound"]["message"]


def test_without_a_transport_actions_answer_503_and_write_nothing(db):
    """No RPC client: a database server without transport_url (agent.api.server.rpc_client;
    the embedded default has the SQLite broker file, tests/e2e/test_api_clients.py)."""
    api = Client(ApiApp(db.sessions, service_down_time=60, server_clock=False))
    server = add_server(db, "h1", states.ACTIVE)
    response, fault = call(api, "POST", f"/v2.1/servers/{server.uuid}/action",
                           {"os-stop": None}, headers=NEW)
    assert response.status_code == 503 and "transport_url" in fault["computeFault"]["message"]
    _, shown = call(api, "GET", f"/v2.1/servers/{server.uuid}", headers=NEW)
    assert shown["server"]["OS-EXT-STS:task_state"] is None


def test_create_schedules_casts_the_build_and_records_the_request(env, any_db_url):
    from tests.functional.test_server_cli import add_flavor, add_host

    api, db, conn = env
    add_flavor(any_db_url)
    with db.sessions() as session:
        flavorid = next(f.flavorid for f in list_flavors(session) if f.name == "small")
    host, queue = add_host(db, conn)
    headers = {**NEW, "X-OpenStack-Request-ID": GLOBAL_ID}
    response, body = call(api, "POST", "/v2.1/servers", {"server": {
        "name": "new", "flavorRef": f"http://x/flavors/{flavorid}", "imageRef": "img-9",
        "networks": "none", "block_device_mapping_v2": [  # as openstackclient sends --image
            {"uuid": "img-9", "boot_index": 0, "source_type": "image",
             "destination_type": "local", "delete_on_termination": True}]}},
        headers=headers)
    assert response.status_code == 202, body
    uuid_ = body["server"]["id"]
    request_id = response.headers["x-openstack-request-id"]
    request = wire.decode_request(get_one(queue).body)
    assert (request.method, request.context.request_id, request.context.global_request_id,
            request.args["instance"]["nova_object.data"]["uuid"]) == (
        "build_and_run_instance", request_id, GLOBAL_ID, uuid_)
    _, shown = call(api, "GET", f"/v2.1/servers/{uuid_}", headers=NEW)
    assert (shown["server"]["status"], shown["server"]["OS-EXT-SRV-ATTR:host"],
            shown["server"]["image"]["id"]) == ("BUILD", host, "img-9")
    _, listed = call(api, "GET", f"/v2.1/servers/{uuid_}/os-instance-actions", headers=NEW)
    assert [(a["action"], a["request_id"]) for a in listed["instanceActions"]] == [
        ("create", request_id)]


@pytest.mark.parametrize("body, message", [
    ({"server": {"name": "x", "flavorRef": "small"}}, "Flavor small could not be found."),
    ({"server": {"name": "x", "flavorRef": "nope"}}, "Flavor nope could not be found."),
    ({"server": {"flavorRef": "1"}}, "'name' is a required property"),
    ({"server": {"name": "x", "flavorRef": "1", "bogus": 1}}, "'bogus' was unexpected"),
    ({"server": {"name": 5, "flavorRef": "1"}}, "is not of type 'string'"),
    ({"server": []}, "must be a JSON object"),
], ids=["flavor-name", "unknown-flavor", "no-name", "unknown-key", "name-type", "not-object"])
def test_create_refusals_are_400_and_save_nothing(env, any_db_url, body, message):
    from tests.functional.test_server_cli import add_flavor

    api, db, _ = env
    add_flavor(any_db_url)
    response, fault = call(api, "POST", "/v2.1/servers", body, headers=NEW)
    assert response.status_code == 400
    assert message in fault["badRequest"]["message"]
    _, listed = call(api, "GET", "/v2.1/servers", headers=NEW)
    assert listed["servers"] == []


def test_a_broker_that_cannot_be_reached_is_503_naming_the_host(db):
    from tests.functional.test_server_cli import closed_port

    transport = parse(f"rabbit://guest:guest@127.0.0.1:{closed_port()}/")
    with RpcClient(transport, connect_timeout=2) as caster:
        api = Client(ApiApp(db.sessions, service_down_time=60, server_clock=False,
                            caster=caster))
        server = add_server(db, "h-unreached", states.ACTIVE)
        response, fault = call(api, "POST", f"/v2.1/servers/{server.uuid}/action",
                               {"os-stop": None}, headers=NEW)
    assert response.status_code == 503
    message = fault["computeFault"]["message"]
    assert "host h-unreached was not asked" in message
    assert response.headers["x-openstack-request-id"] in message
    _, shown = call(api, "GET", f"/v2.1/servers/{server.uuid}", headers=NEW)
    assert shown["server"]["OS-EXT-STS:task_state"] == states.POWERING_OFF  # saved, as documented
