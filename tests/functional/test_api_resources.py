"""os-hypervisors, flavors, os-aggregates and the clients' image lookup through the WSGI
application on every backend: the shapes per version, show by id, and nova's refusals for
unknown and malformed ids."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from agent.api.app import ApiApp
from agent.control.flavors import create_flavor
from agent.control.services import set_disabled
from agent.db.models import ComputeNode, Flavor
from agent.vocabulary import COMPUTE_BINARY
from tests.functional.test_api_services import NEW, OLD, add_service, call


@pytest.fixture
def api(db):
    return Client(ApiApp(db.sessions, service_down_time=60,
                         server_clock=db.engine.dialect.name != "sqlite"))


def add_node(db, host: str) -> ComputeNode:
    with db.sessions.begin() as session:
        node = ComputeNode(host=host, hypervisor_hostname=f"{host}.node", vcpus=8,
                           memory_mb=16384, local_gb=100, vcpus_used=2, memory_mb_used=1024,
                           local_gb_used=10, free_ram_mb=15360, free_disk_gb=90,
                           running_vms=1, hypervisor_type="QEMU", hypervisor_version=7002022,
                           cpu_info=json.dumps({"arch": "x86_64"}), host_ip="192.0.2.7")
        session.add(node)
    with db.sessions() as session:
        return session.get(ComputeNode, node.id)


def test_hypervisors_list_detail_show(db, api):
    service = add_service(db, "cn1")
    node = add_node(db, "cn1")
    add_node(db, "orphan")  # no service: not listed, as nova
    with db.sessions.begin() as session:
        set_disabled(session, "cn1", COMPUTE_BINARY, True, "repair")
    _, body = call(api, "GET", "/v2.1/os-hypervisors", headers=NEW)
    assert body == {"hypervisors": [{"id": node.uuid, "hypervisor_hostname": "cn1.node",
                                     "state": "up", "status": "disabled"}]}
    _, body = call(api, "GET", "/v2.1/os-hypervisors/detail", headers=OLD)
    [entry] = body["hypervisors"]
    assert (entry["id"], entry["service"]) == (
        node.id, {"host": "cn1", "id": service.id, "disabled_reason": "repair"})
    assert (entry["vcpus"], entry["memory_mb_used"], entry["free_disk_gb"],
            entry["hypervisor_version"], entry["cpu_info"]) == (
        8, 1024, 90, 7002022, json.dumps({"arch": "x86_64"}))
    response, body = call(api, "GET", f"/v2.1/os-hypervisors/{node.uuid}", headers=NEW)
    assert response.status_code == 200
    assert (body["hypervisor"]["service"]["id"], body["hypervisor"]["cpu_info"]) == (
        service.uuid, {"arch": "x86_64"})


@pytest.mark.parametrize("path, headers, code, message", [
    ("/v2.1/os-hypervisors/3", NEW, 400, "Invalid uuid 3"),
    ("/v2.1/os-hypervisors/abc", OLD, 400, "Invalid ID abc"),
    ("/v2.1/os-hypervisors/99999", OLD, 404, "Hypervisor with ID '99999' could not be found."),
    ("/v2.1/os-hypervisors/{uuid}/uptime", NEW, 501, "does not implement host uptime"),
    ("/v2.1/flavors/nope", OLD, 404, "Flavor nope could not be found."),
    ("/v2.1/flavors/nope/os-extra_specs", OLD, 404, "Flavor nope could not be found."),
], ids=["non-uuid", "non-integer", "unknown", "uptime", "unknown-flavor", "unknown-specs"])
def test_refusals(db, api, path, headers, code, message):
    add_service(db, "cn1")
    node = add_node(db, "cn1")
    response, body = call(api, "GET", path.replace("{uuid}", node.uuid), headers=headers)
    assert response.status_code == code
    [(_, fault)] = body.items()
    assert message in fault["message"]


def test_flavors(db, api):
    with db.sessions.begin() as session:
        session.query(Flavor).delete()  # db sync's m1.* on SQLite
        create_flavor(session, "big", vcpus=4, memory_mb=8192, root_gb=80, flavorid="f2")
        create_flavor(session, "small", vcpus=1, memory_mb=512, root_gb=1, swap=256,
                      flavorid="f1")
    _, body = call(api, "GET", "/v2.1/p1/flavors")
    assert [f["name"] for f in body["flavors"]] == ["small", "big"]
    assert body["flavors"][0]["links"][0] == {"rel": "self",
                                              "href": "http://localhost/v2.1/flavors/f1"}
    _, body = call(api, "GET", "/v2.1/flavors/detail")
    assert body["flavors"][1] == {
        **body["flavors"][1], "id": "f2", "ram": 8192, "vcpus": 4, "disk": 80, "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": True}
    response, body = call(api, "GET", "/v2.1/flavors/f1")
    assert (response.status_code, body["flavor"]["name"], body["flavor"]["swap"]) == (
        200, "small", 256)
    _, body = call(api, "GET", "/v2.1/flavors/f1/os-extra_specs")
    assert body == {"extra_specs": {}}
    _, body = call(api, "GET", "/v2.1/os-aggregates")
    assert body == {"aggregates": []}


@pytest.mark.parametrize("ref", ["cirros", "6f0c1a52-8a3e-4f57-9a0e-00000000000a"],
                         ids=["name", "uuid"])
def test_image_lookup_answers_the_reference(api, ref):
    """What `openstack server create --image REF` and `server show` fetch from the one
    endpoint they are given: an image whose id and name are the reference (glance v2's
    bare object), whatever the microversion header (the image client sends none)."""
    for headers in ({}, NEW):
        response, body = call(api, "GET", f"/v2.1/images/{ref}", headers=headers)
        assert response.status_code == 200
        assert (body["id"], body["name"], body["status"]) == (ref, ref, "active")


@pytest.mark.parametrize("path", ["/v2.1/images/" + "x" * 256, "/v2.1/images/a%01b"],
                         ids=["too-long", "control-character"])
def test_image_lookup_refuses_what_no_server_could_record(api, path):
    response, body = call(api, "GET", path)
    assert (response.status_code, body) == (
        404, {"itemNotFound": {"code": 404, "message": "Image not found."}})
