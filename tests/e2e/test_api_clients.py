"""The real compute clients against a running `agent api` and a running agent on fakevirt:
openstackclient, novaclient and openstacksdk, installed by `./dev.sh setup` in .venv-clients
(not the agent's dependencies), with the command lines of the interface reference and an
otherwise empty OS_* environment. Each test asserts what the client prints or returns."""

from __future__ import annotations

import datetime as dt
import json
import signal

import pytest
from sqlalchemy import select

from agent.db import action_queries as actions
from agent.db.engine import make_database
from agent.db.models import ComputeNode, Instance, Service
from agent.vocabulary import COMPUTE_BINARY, COMPUTE_TOPIC
from tests.agent_process import AgentProcess, service_row, wait_for, write_config
from tests.api_clients import answers, api_stack, free_port, nova, openstack, sdk

HOST = "cn-api"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The API and the agent on the embedded default (SQLite, no transport_url: server actions
    go through the SQLite broker file; tests/e2e/test_server_embedded_broker.py runs one)."""
    with api_stack(tmp_path_factory.mktemp("api"), HOST) as running:
        yield running


def test_api_says_at_start_that_it_trusts_every_request(stack):
    [line] = [line for line in stack["api"].log_text().splitlines() if "listening on" in line]
    assert line.endswith("(authentication strategy noauth, loopback only: every request is "
                         "trusted)"), line


@pytest.mark.parametrize("ignored", [False, True], ids=["sigint", "sigint-ignored-at-start"])
def test_api_stops_on_sigint(tmp_path, ignored):
    """Ctrl-C (or SIGINT to a process a non-interactive shell started in the background, which
    starts with SIGINT ignored) stops `agent api` as SIGTERM does: one line, exit status 0."""
    config = write_config(tmp_path)
    sync = AgentProcess(config, tmp_path / "sync.log", args=["db", "sync"])
    assert sync.wait() == 0, sync.log_text()
    port = free_port()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignored else None
    try:
        api = AgentProcess(config, tmp_path / "api.log",
                           args=["api", "--bind", f"127.0.0.1:{port}"])
    finally:
        if ignored:
            signal.signal(signal.SIGINT, previous)
    try:
        assert wait_for(lambda: answers(f"http://127.0.0.1:{port}/v2.1")), api.log_text()
        api.send(signal.SIGINT)
        assert api.wait() == 0, api.log_text()
        assert "stopping (signal 2)" in api.log_text()
    finally:
        api.stop()


def listed(stack, version=None) -> dict:
    result = openstack(stack, "compute", "service", "list", "--long", "-f", "json",
                       version=version)
    assert result.returncode == 0, result.stderr
    [entry] = [e for e in json.loads(result.stdout) if e["Host"] == HOST]
    return entry


@pytest.mark.parametrize("version", [None, "2.1", "2.11", "2.53"],
                         ids=["negotiated", "2.1", "2.11", "2.53"])
def test_openstack_compute_service_list(stack, version):
    entry = listed(stack, version)
    row = service_row(stack["url"], HOST)
    expected_id = row.id if version in ("2.1", "2.11") else row.uuid
    assert (entry["ID"], entry["Binary"], entry["Zone"], entry["State"]) == (
        expected_id, "compute-agent", "nova", "up")
    assert ("Forced Down" in entry) == (version != "2.1")


@pytest.mark.parametrize("version", [None, "2.1", "2.11", "2.53"],
                         ids=["negotiated", "2.1", "2.11", "2.53"])
def test_openstack_compute_service_set_disable_and_enable(stack, version):
    result = openstack(stack, "compute", "service", "set", "--disable", "--disable-reason",
                       f"maintenance {version}", HOST, "nova-compute", version=version)
    assert (result.returncode, result.stderr) == (0, "")
    entry = listed(stack, version)
    assert (entry["Status"], entry["Disabled Reason"]) == ("disabled", f"maintenance {version}")
    result = openstack(stack, "compute", "service", "set", "--enable", HOST, "nova-compute",
                       version=version)
    assert result.returncode == 0, result.stderr
    assert listed(stack, version)["Status"] == "enabled"


@pytest.mark.parametrize("version", ["2.11", "2.53"])
def test_openstack_compute_service_set_down_and_up(stack, version):
    result = openstack(stack, "compute", "service", "set", "--down", HOST, "nova-compute",
                       version=version)
    assert result.returncode == 0, result.stderr
    entry = listed(stack, version)
    assert (entry["State"], entry["Forced Down"]) == ("down", True)
    result = openstack(stack, "compute", "service", "set", "--up", HOST, "nova-compute",
                       version=version)
    assert result.returncode == 0, result.stderr
    assert listed(stack, version)["Forced Down"] is False


def test_nova_service_commands(stack):
    result = nova(stack, "service-list")
    assert result.returncode == 0, result.stderr
    assert HOST in result.stdout and "compute-agent" in result.stdout
    result = nova(stack, "--os-compute-api-version", "2.11", "service-disable", "--reason",
                  "novaclient says", HOST)
    assert result.returncode == 0, result.stderr
    assert "| nova-compute | disabled | novaclient says |" in result.stdout
    result = nova(stack, "--os-compute-api-version", "2.11", "service-force-down", HOST)
    assert result.returncode == 0, result.stderr
    assert "| nova-compute | True" in result.stdout
    uuid = service_row(stack["url"], HOST).uuid
    result = nova(stack, "service-force-down", "--unset", uuid)
    assert result.returncode == 0, result.stderr
    assert f"| {uuid} | {HOST}" in result.stdout and "| False" in result.stdout
    result = nova(stack, "service-enable", uuid)
    assert result.returncode == 0, result.stderr
    assert listed(stack)["Status"] == "enabled"


def test_openstacksdk_service_calls(stack):
    script = (
        "import json, openstack\n"
        "conn = openstack.connect(cloud='local')\n"
        f"svc = next(s for s in conn.compute.services() if s.host == {HOST!r})\n"
        "conn.compute.disable_service(svc, disabled_reason='sdk says')\n"
        f"after = next(s for s in conn.compute.services() if s.host == {HOST!r})\n"
        "print(json.dumps([svc.id, svc.binary, svc.state, after.status,"
        " after.disabled_reason]))\n"
        "conn.compute.enable_service(after)\n")
    result = sdk(stack, script)
    assert result.returncode == 0, result.stderr
    uuid = service_row(stack["url"], HOST).uuid
    assert json.loads(result.stdout.splitlines()[-1]) == [
        uuid, "compute-agent", "up", "disabled", "sdk says"]
    assert listed(stack)["Status"] == "enabled"


def node_uuid(stack) -> str | None:
    db = make_database(stack["url"])
    try:
        with db.sessions() as session:
            return session.scalar(select(ComputeNode.uuid).where(ComputeNode.host == HOST,
                                                                 ComputeNode.deleted == 0))
    finally:
        db.dispose()


def test_openstack_hypervisor_list_and_show(stack):
    uuid = wait_for(lambda: node_uuid(stack))  # the agent's first audit creates the node
    assert uuid
    result = openstack(stack, "hypervisor", "list", "-f", "json")
    assert result.returncode == 0, result.stderr
    [entry] = [e for e in json.loads(result.stdout) if e["ID"] == uuid]
    assert (entry["Hypervisor Hostname"], entry["Hypervisor Type"], entry["State"]) == (
        HOST, "fake", "up")
    result = openstack(stack, "hypervisor", "show", HOST, "-f", "json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    service = service_row(stack["url"], HOST)
    assert (shown["id"], shown["service_host"], shown["service_id"], shown["status"],
            shown["aggregates"]) == (uuid, HOST, service.uuid, "enabled", [])
    assert shown["vcpus"] > 0 and shown["memory_mb"] > 0


def test_openstack_flavor_list_and_show(stack):
    result = openstack(stack, "flavor", "list", "-f", "json")
    assert result.returncode == 0, result.stderr
    assert [(f["Name"], f["RAM"], f["VCPUs"]) for f in json.loads(result.stdout)][:2] == [
        ("m1.tiny", 512, 1), ("m1.small", 2048, 1)]
    result = openstack(stack, "flavor", "show", "m1.small", "-f", "json")
    assert result.returncode == 0, result.stderr
    assert (json.loads(result.stdout)["disk"], json.loads(result.stdout)["id"]) == (20, "2")


REQUEST_ID = "req-0b8c4b8e-5d3f-4a55-9a0e-3c8f3e4d2a11"


def test_openstack_server_list_show_and_events(stack):
    db = make_database(stack["url"])
    flavor = json.dumps({"flavorid": "2", "name": "m1.small", "vcpus": 1, "memory_mb": 2048,
                         "root_gb": 20, "ephemeral_gb": 0, "swap": 0})
    try:
        with db.sessions.begin() as session:
            server = Instance(display_name="listed", host=HOST, node=HOST, vm_state="stopped",
                              power_state=4, flavor=flavor)
            session.add(server)
        with db.sessions() as session:
            uuid = session.get(Instance, server.id).uuid
        result = openstack(stack, "--os-identity-api-version", "3", "server", "list",
                           "--no-name-lookup", "-f", "json")
        assert result.returncode == 0, result.stderr
        assert [(s["ID"], s["Name"], s["Status"]) for s in json.loads(result.stdout)] == [
            (uuid, "listed", "SHUTOFF")]
        result = openstack(stack, "server", "show", uuid, "-f", "json")
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"],
                shown["OS-EXT-STS:vm_state"]) == ("SHUTOFF", HOST, "stopped")
        with db.sessions.begin() as session:
            actions.start_action(session, instance_uuid=uuid, action="stop",
                                 request_id=REQUEST_ID)
            event = actions.start_event(session, instance_uuid=uuid, request_id=REQUEST_ID,
                                        event="compute_stop_instance", host=HOST)
            actions.finish_event(session, event, result=actions.EVENT_SUCCESS)
        result = openstack(stack, "server", "event", "list", uuid, "-f", "json")
        assert result.returncode == 0, result.stderr
        assert [(a["Request ID"], a["Action"]) for a in json.loads(result.stdout)] == [
            (REQUEST_ID, "stop")]
        result = openstack(stack, "server", "event", "show", uuid, REQUEST_ID, "-f", "json")
        assert result.returncode == 0, result.stderr
        [shown_event] = json.loads(result.stdout)["events"]
        assert (shown_event["event"], shown_event["result"]) == (
            "compute_stop_instance", "Success")
    finally:
        with db.sessions.begin() as session:
            session.query(Instance).delete()
        db.dispose()


def test_refused_delete_is_shown_then_delete(stack):
    db = make_database(stack["url"])
    try:
        with db.sessions.begin() as session:
            session.add(Instance(display_name="vm", host=HOST, node=HOST, vm_state="active",
                                 power_state=1))
        uuid = service_row(stack["url"], HOST).uuid
        result = openstack(stack, "compute", "service", "delete", uuid)
        assert result.returncode == 1
        assert f"Failed to delete compute service with ID '{uuid}': ConflictException: 409" \
            in result.stderr
        assert ("Unable to delete compute service that is hosting instances. Migrate or "
                "delete the instances first.\n1 of 1 compute services failed to delete.\n"
                ) in result.stderr
        result = nova(stack, "service-delete", uuid)
        assert result.returncode == 1
        assert "ERROR (Conflict): Unable to delete compute service that is hosting" \
            in result.stderr
        assert service_row(stack["url"], HOST) is not None
        with db.sessions.begin() as session:
            session.query(Instance).delete()
    finally:
        db.dispose()
    stack["agent"].stop()  # a running agent would register its host again
    result = openstack(stack, "compute", "service", "delete", uuid)
    assert (result.returncode, result.stderr) == (0, "")
    assert service_row(stack["url"], HOST) is None
    log = stack["api"].log_text()
    assert '"DELETE /v2.1/os-services/' in log and "status 204" in log


PAGED_HOST = "cn-paged"


@pytest.fixture(scope="module")
def paged_stack(tmp_path_factory):
    """The API with `[api] max_limit = 2`, over the agent's own hypervisor and three more
    (services beating now) and five servers: every list takes several pages."""
    with api_stack(tmp_path_factory.mktemp("paged"), PAGED_HOST,
                   api_options={"max_limit": 2}) as running:
        db = make_database(running["url"])
        try:
            assert wait_for(lambda: _node_count(db) == 1)  # the agent's first audit
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            with db.sessions.begin() as session:
                for i in range(3):
                    session.add(Service(host=f"cn-extra{i}", binary=COMPUTE_BINARY,
                                        topic=COMPUTE_TOPIC, report_count=1,
                                        last_seen_up=now))
                    session.add(ComputeNode(host=f"cn-extra{i}",
                                            hypervisor_hostname=f"cn-extra{i}", vcpus=4,
                                            memory_mb=4096, local_gb=40,
                                            hypervisor_type="QEMU", hypervisor_version=1))
                for i in range(5):
                    session.add(Instance(display_name=f"paged-{i}", host=PAGED_HOST,
                                         node=PAGED_HOST, vm_state="active", power_state=1,
                                         created_at=now - dt.timedelta(minutes=i)))
            with db.sessions() as session:
                running["hypervisors"] = sorted(session.scalars(
                    select(ComputeNode.uuid).where(ComputeNode.deleted == 0)))
                running["servers"] = sorted(session.scalars(
                    select(Instance.uuid).where(Instance.deleted == 0)))
        finally:
            db.dispose()
        yield running


def _node_count(db) -> int:
    with db.sessions() as session:
        return len(session.scalars(select(ComputeNode.id)).all())


def test_openstacksdk_follows_the_next_links(paged_stack):
    """openstacksdk's generators walk every page of max_limit = 2 and see every row once."""
    script = (
        "import json, openstack\n"
        "conn = openstack.connect(cloud='local')\n"
        "print(json.dumps([[h.id for h in conn.compute.hypervisors(details=True)],"
        " [s.id for s in conn.compute.servers()]]))\n")
    result = sdk(paged_stack, script)
    assert result.returncode == 0, result.stderr
    hypervisors, servers = json.loads(result.stdout.splitlines()[-1])
    assert sorted(hypervisors) == paged_stack["hypervisors"] and len(hypervisors) == 4
    assert sorted(servers) == paged_stack["servers"] and len(servers) == 5
    # Several pages, as the API's access log shows: 2 + 2 (+ an empty one after a full
    # page, nova's rule) hypervisors, 2 + 2 + 1 servers.
    log = paged_stack["api"].log_text()
    assert log.count('"GET /v2.1/os-hypervisors/detail?marker=') >= 2
    assert log.count('"GET /v2.1/servers/detail?marker=') >= 2


def test_openstackclient_lists_every_row(paged_stack):
    result = openstack(paged_stack, "hypervisor", "list", "-f", "json")
    assert result.returncode == 0, result.stderr
    assert sorted(e["ID"] for e in json.loads(result.stdout)) == paged_stack["hypervisors"]
    result = openstack(paged_stack, "--os-identity-api-version", "3", "server", "list",
                       "--no-name-lookup", "-f", "json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert sorted(s["ID"] for s in listed) == paged_stack["servers"]
    # nova's order, newest first, across the pages.
    assert [s["Name"] for s in listed] == [f"paged-{i}" for i in range(5)]
