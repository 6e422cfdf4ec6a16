"""os-services through the WSGI application on every backend: what a client receives for each
version, each action and each refusal (nova's codes and fault bodies), and that a refusal
changes nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from agent.api.app import ApiApp
from agent.db.models import Instance, Migration, Service
from agent.heartbeat import Heartbeat
from agent.log import RequestIdFilter
from agent.registry import register_service

OLD = {"X-OpenStack-Nova-API-Version": "2.11"}
NEW = {"OpenStack-API-Version": "compute 2.53", "X-OpenStack-Nova-API-Version": "2.53"}


def add_service(db, host: str) -> Service:
    record = register_service(db, host, starting=False)
    assert Heartbeat(db, record.id, 10).beat()
    return row(db, host)


def row(db, host: str) -> Service | None:
    with db.sessions() as session:
        return session.scalars(select(Service).where(Service.host == host,
                                                     Service.deleted == 0)).one_or_none()


@pytest.fixture
def api(db):
    app = ApiApp(db.sessions, service_down_time=60,
                 server_clock=db.engine.dialect.name != "sqlite", max_body_bytes=4096)
    return Client(app)


def call(api, method, path, body=None, headers=OLD, raw=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    response = api.open(path, method=method, data=data, headers=headers,
                        content_type="application/json")
    text = response.get_data(as_text=True)
    return response, (json.loads(text) if text else None)


def test_discovery_answers_without_redirect(api):
    for path in ("/", "/v2.1", "/v2.1/", "/v2.1/proj1"):
        response, body = call(api, "GET", path, headers={})
        assert response.status_code == 200, path
        doc = body["versions"][0] if path == "/" else body["version"]
        assert (doc["version"], doc["min_version"]) == ("2.53", "2.1")
        assert doc["links"] == [{"rel": "self", "href": "http://localhost/v2.1/"}]


def test_list_by_version_with_filters_and_extras(db, api):
    cn1 = add_service(db, "cn1")
    add_service(db, "cn2")
    response, body = call(api, "GET", "/v2.1/os-services?host=cn1", headers={})
    assert response.headers["OpenStack-API-Version"] == "compute 2.1"
    assert response.headers["x-openstack-request-id"].startswith("req-")
    [entry] = body["services"]
    assert entry["id"] == cn1.id and "forced_down" not in entry
    assert (entry["host"], entry["zone"], entry["status"], entry["state"]) == (
        "cn1", "nova", "enabled", "up")
    assert entry["down_reason"] is None and entry["last_seen_up"]
    _, body = call(api, "GET", "/v2.1/p/os-services?binary=nova-compute", headers=NEW)
    assert [(s["id"], s["forced_down"]) for s in body["services"]][0] == (cn1.uuid, False)
    assert len(body["services"]) == 2
    _, body = call(api, "GET", "/v2.1/os-services?binary=nova-scheduler")
    assert body == {"services": []}


def test_old_style_actions(db, api):
    add_service(db, "cn1")
    target = {"host": "cn1", "binary": "nova-compute"}
    response, body = call(api, "PUT", "/v2.1/os-services/disable-log-reason",
                          dict(target, disabled_reason="maintenance"))
    assert response.status_code == 200
    assert body == {"service": dict(target, status="disabled", disabled_reason="maintenance")}
    assert row(db, "cn1").disabled_reason == "maintenance"
    _, body = call(api, "PUT", "/v2.1/os-services/enable", target)
    assert body == {"service": dict(target, status="enabled")}
    _, body = call(api, "PUT", "/v2.1/os-services/force-down", dict(target, forced_down=True))
    assert body == {"service": dict(target, forced_down=True)}
    _, body = call(api, "GET", "/v2.1/os-services")
    assert body["services"][0]["state"] == "down"
    assert body["services"][0]["down_reason"] == "forced down"


def test_put_by_uuid(db, api):
    cn1 = add_service(db, "cn1")
    response, body = call(api, "PUT", f"/v2.1/os-services/{cn1.uuid}",
                          {"status": "disabled", "disabled_reason": "disk swap"}, NEW)
    assert response.status_code == 200
    assert (body["service"]["id"], body["service"]["status"],
            body["service"]["disabled_reason"]) == (cn1.uuid, "disabled", "disk swap")
    _, body = call(api, "PUT", f"/v2.1/os-services/{cn1.uuid}", {"forced_down": True}, NEW)
    assert (body["service"]["forced_down"], body["service"]["state"]) == (True, "down")


@pytest.mark.parametrize("method, path, body, headers, code, message", [
    ("PUT", "/v2.1/os-services/disable-log-reason",
     {"host": "cn1", "binary": "nova-compute", "disabled_reason": "x" * 256}, OLD, 400,
     "Length must be between 1 and 255"),
    ("PUT", "/v2.1/os-services/disable-log-reason",
     {"host": "cn1", "binary": "nova-compute", "disabled_reason": "AUTO: mine"}, OLD, 400,
     "reserved 'AUTO:'"),
    ("PUT", "/v2.1/os-services/disable-log-reason",
     {"host": "cn1", "binary": "nova-compute", "disabled_reason": "a\x00b"}, OLD, 400,
     "disabled_reason. Value: 'a\\x00b'. Control characters are not allowed"),
    ("PUT", "/v2.1/os-services/{uuid}", {"status": "disabled", "disabled_reason": "a\nb"}, NEW,
     400, "Control characters are not allowed"),
    ("PUT", "/v2.1/os-services/disable", {"host": "cn\x001", "binary": "nova-compute"}, OLD,
     400, "host. Value: 'cn\\x001'. Control characters are not allowed"),
    ("GET", "/v2.1/os-services?host=cn%001", None, OLD, 400,
     "query parameter host. Value: 'cn\\x001'. Control characters are not allowed"),
    ("PUT", "/v2.1/os-services/disable-log-reason", {"host": "cn1", "binary": "nova-compute"},
     OLD, 400, "'disabled_reason' is a required property"),
    ("PUT", "/v2.1/os-services/disable", {"host": "cn1", "binary": "nova-scheduler"}, OLD, 400,
     "Updating a nova-scheduler service is not supported"),
    ("PUT", "/v2.1/os-services/disable", {"host": "nowhere", "binary": "nova-compute"}, OLD,
     404, "Host 'nowhere' with binary 'nova-compute' not found."),
    ("PUT", "/v2.1/os-services/disable", {"host": "cn1", "binary": "nova-compute", "x": 1},
     OLD, 400, "Additional properties are not allowed ('x' was unexpected)"),
    ("PUT", "/v2.1/os-services/disable", {"host": 5, "binary": "nova-compute"}, OLD, 400,
     "is not of type 'string'"),
    ("PUT", "/v2.1/os-services/force-down",
     {"host": "cn1", "binary": "nova-compute", "forced_down": "yes"}, OLD, 400,
     "is not of type 'boolean'"),
    ("PUT", "/v2.1/os-services/force-down",
     {"host": "cn1", "binary": "nova-compute", "forced_down": True},
     {"X-OpenStack-Nova-API-Version": "2.10"}, 404, "Unknown action"),
    ("PUT", "/v2.1/os-services/reboot", {"host": "cn1", "binary": "nova-compute"}, OLD, 404,
     "Unknown action"),
    ("PUT", "/v2.1/os-services/3", {"status": "disabled"}, NEW, 400, "Invalid uuid 3"),
    ("PUT", "/v2.1/os-services/enable", {"host": "cn1", "binary": "nova-compute"}, NEW, 400,
     "Invalid uuid enable"),
    ("PUT", "/v2.1/os-services/{uuid}", {}, NEW, 400, "No updates were requested."),
    ("PUT", "/v2.1/os-services/{uuid}", {"status": "enabled", "disabled_reason": "r"}, NEW,
     400, "Specifying 'disabled_reason' with status 'enabled' is invalid."),
    ("PUT", "/v2.1/os-services/{uuid}", {"status": "disabled", "host": "cn1"}, NEW, 400,
     "Additional properties are not allowed ('host' was unexpected)"),
    ("PUT", "/v2.1/os-services/{uuid}", {"status": "off"}, NEW, 400,
     "is not one of ['enabled', 'disabled']"),
    ("PUT", "/v2.1/os-services/{uuid}", ["status"], NEW, 400, "must be a JSON object"),
    ("PUT", "/v2.1/os-services/11111111-1111-4111-8111-111111111111", {"status": "disabled"},
     NEW, 404, "Service 11111111-1111-4111-8111-111111111111 not found."),
    ("DELETE", "/v2.1/os-services/abc", None, OLD, 400, "Invalid ID abc"),
    ("DELETE", "/v2.1/os-services/999999", None, OLD, 404, "Service 999999 not found."),
    ("DELETE", "/v2.1/os-services/999999", None, NEW, 400, "Invalid uuid 999999"),
    ("GET", "/v2.1/os-services", None, {"OpenStack-API-Version": "compute 2.54"}, 406,
     "Version 2.54 is not supported by the API. Minimum is 2.1 and maximum is 2.53."),
    ("GET", "/v2.1/os-services", None, {"OpenStack-API-Version": "compute 2.x"}, 400,
     "is of invalid format"),
    ("POST", "/v2.1/os-services", None, OLD, 405, "Method not allowed"),
    ("GET", "/v2.1/os-nothing/x/y", None, OLD, 404, "Not found"),
], ids=["reason-too-long", "reason-reserved", "reason-nul", "reason-newline-2.53", "host-nul",
        "query-host-nul", "reason-missing", "not-compute", "unknown-host",
        "unknown-field", "wrong-type", "forced-down-not-bool", "force-down-before-2.11",
        "unknown-action", "non-uuid-put", "old-url-at-2.53", "empty-put",
        "reason-with-enabled", "host-in-2.53-body", "bad-status", "body-not-object",
        "unknown-uuid", "non-integer-delete", "unknown-id-delete", "non-uuid-delete",
        "version-above-max", "version-malformed", "bad-method", "unknown-path"])
def test_refusals(db, api, method, path, body, headers, code, message):
    cn1 = add_service(db, "cn1")
    before = row(db, "cn1")
    response, answer = call(api, method, path.replace("{uuid}", cn1.uuid), body, headers)
    assert response.status_code == code
    assert response.headers["Content-Type"] == "application/json"
    [(kind, fault)] = answer.items()
    assert kind == {400: "badRequest", 404: "itemNotFound", 405: "badMethod",
                    406: "computeFault"}[code]
    assert fault["code"] == code and message in fault["message"]
    after = row(db, "cn1")
    assert (after.disabled, after.disabled_reason, after.forced_down) == (
        before.disabled, before.disabled_reason, before.forced_down)


def test_malformed_and_oversized_bodies(db, api):
    add_service(db, "cn1")
    response, answer = call(api, "PUT", "/v2.1/os-services/disable", raw="{not json")
    assert (response.status_code, answer["badRequest"]["message"]) == (
        400, "Malformed request body")
    big = json.dumps({"host": "cn1", "binary": "nova-compute", "x": "y" * 5000})
    response, answer = call(api, "PUT", "/v2.1/os-services/disable", raw=big)
    assert response.status_code == 413 and answer["overLimit"]["code"] == 413
    assert row(db, "cn1").disabled is False


def test_force_up_refused_while_evacuations_are_done(db, api):
    cn1 = add_service(db, "src")
    call(api, "PUT", f"/v2.1/os-services/{cn1.uuid}", {"forced_down": True}, NEW)
    with db.sessions.begin() as session:
        session.add(Migration(instance_uuid="22222222-2222-4222-8222-222222222222",
                              source_compute="src", dest_compute="dst",
                              migration_type="evacuation", status="done"))
    response, answer = call(api, "PUT", f"/v2.1/os-services/{cn1.uuid}",
                            {"forced_down": False}, NEW)
    assert response.status_code == 400
    assert "cannot be forced up while 1 evacuation(s)" in answer["badRequest"]["message"]
    assert row(db, "src").forced_down is True


@pytest.mark.parametrize("what", ["instance", "migration"])
def test_delete_refused_while_in_use_then_deleted(db, api, what):
    cn1 = add_service(db, "busy")
    with db.sessions.begin() as session:
        if what == "instance":
            session.add(Instance(display_name="vm", host="busy", node="busy",
                                 vm_state="active", power_state=1))
        else:
            session.add(Migration(instance_uuid="11111111-1111-4111-8111-111111111111",
                                  source_compute="other", dest_compute="busy",
                                  migration_type="migration", status="migrating"))
    response, answer = call(api, "DELETE", f"/v2.1/os-services/{cn1.id}")
    assert response.status_code == 409
    expected = ("hosting instances" if what == "instance" else "in-progress migrations")
    assert expected in answer["conflictingRequest"]["message"]
    assert row(db, "busy") is not None
    with db.sessions.begin() as session:
        for model in (Instance, Migration):
            session.query(model).delete()
    response, answer = call(api, "DELETE", f"/v2.1/os-services/{cn1.uuid}", headers=NEW)
    assert (response.status_code, answer) == (204, None)
    assert row(db, "busy") is None


def test_inbound_request_id_is_logged_as_global(db, api, caplog):
    add_service(db, "cn1")
    inbound = "req-11111111-2222-4333-8444-555555555555"
    caplog.handler.addFilter(RequestIdFilter())  # stamps the ids, as the agent's handler
    with caplog.at_level("INFO"):
        response, _ = call(api, "GET", "/v2.1/os-services",
                           headers=dict(OLD, **{"X-OpenStack-Request-ID": inbound}))
        call(api, "GET", "/v2.1/os-services", headers=OLD)
    own = response.headers["x-openstack-request-id"]
    assert own != inbound and response.headers["x-compute-request-id"] == own
    assert f"global request id {inbound}" in caplog.text
    access = [r for r in caplog.records if r.name == "agent.api.access"]
    assert len(access) == 2 and '"GET /v2.1/os-services" status 200' in access[0].getMessage()
    # every line of the request carries both ids, the global one first; without one, only
    # the request's own
    assert {r.request_id for r in caplog.records
            if inbound in r.request_id or own in r.request_id} == {f"{inbound} {own}"}
    assert access[1].request_id.startswith("req-") and " " not in access[1].request_id
