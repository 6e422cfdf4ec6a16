"""Paged lists over the WSGI application on every backend: a client that follows the next links
of os-hypervisors (from 2.33), servers and flavors sees every row once, in nova's order; each
page is one SQL statement (two for an empty page after a marker); a bad limit or an unknown
marker is nova's 400."""

from __future__ import annotations

import contextlib
import datetime as dt
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event
from werkzeug.test import Client

from agent.api.app import ApiApp
from agent.control.flavors import create_flavor
from agent.db.models import ComputeNode, Flavor, Instance
from tests.functional.test_api_resources import add_node
from tests.functional.test_api_services import add_service, call


def headers(version: str) -> dict:
    return {"OpenStack-API-Version": f"compute {version}",
            "X-OpenStack-Nova-API-Version": version}


def make_api(db, max_limit: int) -> Client:
    return Client(ApiApp(db.sessions, service_down_time=60,
                         server_clock=db.engine.dialect.name != "sqlite",
                         max_limit=max_limit))


@contextlib.contextmanager
def count_queries(engine):
    """The statements sent, less the savepoints of the `db` fixture's outer transaction."""
    sent: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", before)


def walk(db, api, path: str, key: str, version: str = "2.53") -> tuple[list[dict], list[int]]:
    """Every entry of `path` following the next links, and the statements of each page."""
    seen, statements = [], []
    while path:
        with count_queries(db.engine) as sent:
            response, body = call(api, "GET", path, headers=headers(version))
        assert response.status_code == 200, body
        statements.append(len(sent))
        seen += body[key]
        links = body.get(f"{key}_links", [])
        assert len(links) <= 1 and all(link["rel"] == "next" for link in links)
        path = None
        if links:
            href = urlsplit(links[0]["href"])
            assert (href.scheme, href.netloc) == ("http", "localhost")
            path = f"{href.path}?{href.query}"
    return seen, statements


@pytest.fixture
def nodes(db) -> list[ComputeNode]:
    found = []
    for i in range(5):
        add_service(db, f"cn{i}")
        found.append(add_node(db, f"cn{i}"))
    return found


@pytest.mark.parametrize("version, id_field", [("2.33", "id"), ("2.52", "id"),
                                               ("2.53", "uuid")])
@pytest.mark.parametrize("collection", ["os-hypervisors", "os-hypervisors/detail"])
def test_hypervisors_walk_from_2_33(db, nodes, collection, version, id_field):
    api = make_api(db, max_limit=2)
    seen, statements = walk(db, api, f"/v2.1/{collection}", "hypervisors", version)
    assert [e["id"] for e in seen] == [getattr(n, id_field) for n in nodes]
    # 2 + 2 + 1: the last page is short, so it has no next link; one statement each.
    assert statements == [1, 1, 1]
    assert ("service" in seen[0]) is collection.endswith("detail")


def test_hypervisors_limit_and_marker_at_2_33_and_2_53(db, nodes):
    api = make_api(db, max_limit=1000)
    _, body = call(api, "GET", "/v2.1/os-hypervisors?limit=2", headers=headers("2.33"))
    assert [e["id"] for e in body["hypervisors"]] == [nodes[0].id, nodes[1].id]
    assert body["hypervisors_links"][0]["href"] == (
        f"http://localhost/v2.1/os-hypervisors?limit=2&marker={nodes[1].id}")
    # nova resolves a marker by uuid or by id at any version from 2.33.
    for version, marker in (("2.33", nodes[2].uuid), ("2.53", str(nodes[2].id))):
        _, body = call(api, "GET", f"/v2.1/os-hypervisors?marker={marker}",
                       headers=headers(version))
        assert [e["hypervisor_hostname"] for e in body["hypervisors"]] == [
            "cn3.node", "cn4.node"]
        assert "hypervisors_links" not in body
    # After the last node: an empty page, not an unknown marker.
    response, body = call(api, "GET", f"/v2.1/os-hypervisors?marker={nodes[4].uuid}",
                          headers=headers("2.53"))
    assert (response.status_code, body) == (200, {"hypervisors": []})
    _, body = call(api, "GET", f"/v2.1/p1/os-hypervisors?limit=1&marker={nodes[3].uuid}",
                   headers=headers("2.53"))
    assert body["hypervisors_links"][0]["href"] == (
        f"http://localhost/v2.1/p1/os-hypervisors?limit=1&marker={nodes[4].uuid}")


def test_hypervisors_below_2_33_are_one_unpaged_list(db, nodes):
    api = make_api(db, max_limit=2)
    _, body = call(api, "GET", "/v2.1/os-hypervisors/detail?limit=1&marker=nope",
                   headers=headers("2.32"))
    assert [e["id"] for e in body["hypervisors"]] == [n.id for n in nodes]
    assert "hypervisors_links" not in body


@pytest.mark.parametrize("query, version, message", [
    ("marker=999999", "2.33", "marker [999999] not found"),
    ("marker=6f0c1a52-8a3e-4f57-9a0e-00000000000a", "2.53",
     "marker [6f0c1a52-8a3e-4f57-9a0e-00000000000a] not found"),
    ("marker=cn1", "2.53", "marker [cn1] not found"),
    ("marker=DELETED", "2.53", "marker [DELETED] not found"),
    ("limit=-1", "2.33", "Invalid input for query parameters limit. Value: -1."),
    ("limit=x", "2.53", "Invalid input for query parameters limit. Value: x."),
    ("limit=1&limit=2", "2.53", "is too long"),
], ids=["unknown-id", "unknown-uuid", "not-an-id", "deleted-node", "negative", "word",
        "repeated-2.53"])
def test_hypervisor_paging_refusals(db, nodes, query, version, message):
    with db.sessions.begin() as session:
        session.get(ComputeNode, nodes[0].id).deleted = nodes[0].id
    api = make_api(db, max_limit=1000)
    query = query.replace("DELETED", nodes[0].uuid)
    message = message.replace("DELETED", nodes[0].uuid)
    response, body = call(api, "GET", f"/v2.1/os-hypervisors?{query}", headers=headers(version))
    assert response.status_code == 400
    assert message in body["badRequest"]["message"]


T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


@pytest.fixture
def servers(db) -> list[str]:
    """Five live servers and one deleted; uuids in nova's list order (created_at, then id,
    newest first): two share a created_at."""
    made = []
    with db.sessions.begin() as session:
        for name, seconds, deleted in (("a", 0, False), ("b", 60, False), ("c", 60, False),
                                       ("gone", 90, True), ("d", 120, False),
                                       ("e", 180, False)):
            server = Instance(display_name=name, host="cn1", vm_state="active",
                              created_at=T0 + dt.timedelta(seconds=seconds))
            session.add(server)
            session.flush()
            if deleted:
                server.deleted = server.id
            made.append((name, server))
    with db.sessions() as session:
        rows = {name: session.get(Instance, s.id) for name, s in made}
        return [rows[n].uuid for n in ("e", "d", "gone", "c", "b", "a")]


@pytest.mark.parametrize("collection", ["servers", "servers/detail"])
def test_servers_walk_newest_first(db, servers, collection):
    live = [u for i, u in enumerate(servers) if i != 2]
    seen, statements = walk(db, make_api(db, max_limit=2), f"/v2.1/{collection}", "servers",
                            "2.1")
    assert [e["id"] for e in seen] == live
    # 2 + 2 + 1 servers; one statement a page.
    assert statements == [1, 1, 1]
    seen, statements = walk(db, make_api(db, max_limit=1000), f"/v2.1/{collection}?limit=1",
                            "servers")
    assert [e["id"] for e in seen] == live
    # A full last page of one links to an empty page, as nova; an empty page after a
    # marker takes a second statement, to tell the end from an unknown marker.
    assert statements == [1] * 5 + [2]


def test_servers_marker_rules(db, servers):
    api = make_api(db, max_limit=1000)
    # A deleted server is still a marker (nova reads it with read_deleted).
    _, body = call(api, "GET", f"/v2.1/servers?marker={servers[2]}")
    assert [e["id"] for e in body["servers"]] == servers[3:]
    _, body = call(api, "GET", "/v2.1/servers?limit=0")
    assert body == {"servers": []}
    for query, message in (("marker=nope", "marker [nope] not found"),
                           ("limit=-2", "'-2' does not match '^[0-9]*$'")):
        response, body = call(api, "GET", f"/v2.1/servers/detail?{query}")
        assert (response.status_code, body["badRequest"]["message"].endswith(message)) == (
            400, True), body


def test_flavors_walk_by_flavorid(db):
    with db.sessions.begin() as session:
        session.query(Flavor).delete()  # db sync's m1.* on SQLite
        for flavorid, memory in (("f3", 512), ("f1", 4096), ("f5", 256), ("f2", 1024),
                                 ("f4", 128)):
            create_flavor(session, f"n-{flavorid}", vcpus=1, memory_mb=memory,
                          flavorid=flavorid)
    api = make_api(db, max_limit=2)
    for collection in ("flavors", "flavors/detail"):
        seen, statements = walk(db, api, f"/v2.1/{collection}", "flavors", "2.1")
        assert [e["id"] for e in seen] == ["f1", "f2", "f3", "f4", "f5"]
        assert statements == [1, 1, 1]
    response, body = call(api, "GET", "/v2.1/flavors?marker=f9")
    assert (response.status_code, body["badRequest"]["message"]) == (
        400, "marker [f9] not found")
