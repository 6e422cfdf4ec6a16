"""A server's life through the real clients, and one request followed end to end.

A running `agent api` and a running agent daemon on fakevirt, both with a transport_url to a
RabbitMQ virtual host of this module's own: openstackclient creates a server (`--image`
answered by the API's image lookup, since no glance runs), lists and shows it, stops, starts,
reboots (soft and hard), pauses, unpauses and deletes it, and is refused a start of an active
server with nova's 409. Each step asserts what the client prints, the instance row, and the
agent's log line of the operation with the power state the fakevirt guest reported after the
driver call (what the row's power_state is saved from).

Then one `stop` sent by openstacksdk with a global request id (`Connection.global_request`:
openstackclient and the nova CLI cannot set X-OpenStack-Request-ID): a user finds the request
by either id, with grep, in the API's log and the agent's; `openstack server event list|show`
name the action by the API's own request id (the x-openstack-request-id it answered), as
nova's instance actions do.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest
from sqlalchemy import select

from agent.db.engine import make_database
from agent.db.models import Instance
from tests.agent_process import host_scenario, wait_for
from tests.api_clients import api_stack, openstack, sdk
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def stack(rabbit_vhost, tmp_path_factory):
    directory = tmp_path_factory.mktemp("api-servers")
    host = unique_host("api")
    with api_stack(directory, host, transport_url=rabbit_vhost[1],
                   scenario=host_scenario(directory, host)) as running:
        running["host"] = host
        db = make_database(running["url"])
        running["db"] = db
        try:
            yield running
        finally:
            db.dispose()


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def show(stack, server: str) -> dict:
    return json.loads(ok(openstack(stack, "server", "show", server, "-f", "json")))


def listed(stack) -> list[tuple[str, str, str]]:
    """`server list`'s ID, Name and Status; its Flavor column must name the flavor (at the
    negotiated 2.53 the client reads the embedded flavor's original_name)."""
    out = ok(openstack(stack, "--os-identity-api-version", "3", "server", "list",
                       "--no-name-lookup", "-f", "json"))
    servers = json.loads(out)
    assert all(s["Flavor"] == "m1.tiny" for s in servers), servers
    return [(s["ID"], s["Name"], s["Status"]) for s in servers]


def settled(stack, server: str, status: str) -> dict:
    """`server show` once the server has `status` and no task (the agent is done)."""
    shown = wait_for(lambda: (s := show(stack, server))["status"] == status
                     and s["OS-EXT-STS:task_state"] is None and s, step=0.5)
    assert shown, (show(stack, server), stack["agent"].log_text())
    return shown


def row(stack, uuid_: str):
    with stack["db"].sessions() as session:
        return session.execute(select(Instance.host, Instance.vm_state, Instance.task_state,
                                      Instance.power_state, Instance.image_ref,
                                      Instance.deleted)
                               .where(Instance.uuid == uuid_)).one()


def created(stack, name: str) -> dict:
    shown = json.loads(ok(openstack(stack, "server", "create", "--flavor", "m1.tiny",
                                    "--image", "cirros", "--wait", name, "-f", "json")))
    assert shown["status"] == "ACTIVE", (shown, stack["agent"].log_text())
    return shown


def agent_lines(stack, request_id: str) -> list[str]:
    return [line for line in stack["agent"].log_text().splitlines() if request_id in line]


# (openstackclient command, status, vm_state, power_state (nova's integer, its name))
LIFECYCLE = [
    (("stop",), "SHUTOFF", "stopped", 4, "SHUTDOWN"),
    (("start",), "ACTIVE", "active", 1, "RUNNING"),
    (("reboot", "--wait"), "ACTIVE", "active", 1, "RUNNING"),
    (("reboot", "--hard", "--wait"), "ACTIVE", "active", 1, "RUNNING"),
    (("pause",), "PAUSED", "paused", 3, "PAUSED"),
    (("unpause",), "ACTIVE", "active", 1, "RUNNING"),
]


def test_server_lifecycle_with_openstackclient(stack):
    host = stack["host"]
    shown = created(stack, "life")
    server = shown["id"]
    flavor = shown["flavor"]  # embedded at the negotiated 2.53 (nova's shape from 2.47)
    assert (flavor["original_name"], flavor["vcpus"], flavor["ram"], flavor["disk"],
            shown["image"], shown["OS-EXT-SRV-ATTR:host"],
            shown["OS-EXT-SRV-ATTR:hypervisor_hostname"], shown["OS-EXT-STS:vm_state"],
            shown["OS-EXT-STS:power_state"], shown["OS-EXT-STS:task_state"]) == (
        "m1.tiny", 1, 512, 1, "cirros (cirros)", host, host, "active", 1, None)
    assert tuple(row(stack, server)) == (host, "active", None, 1, "cirros", 0)
    assert listed(stack) == [(server, "life", "ACTIVE")]

    for command, status, vm_state, power, power_name in LIFECYCLE:
        result = openstack(stack, "server", *command, "life")
        assert (result.returncode, result.stderr) == (0, ""), command
        shown = settled(stack, server, status)
        assert (shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:power_state"],
                shown["OS-EXT-SRV-ATTR:host"]) == (vm_state, power, host), command
        assert tuple(row(stack, server))[:4] == (host, vm_state, None, power), command
        assert listed(stack) == [(server, "life", status)], command

    # a start of an active server: nova's 409 as the client prints it, and nothing changes
    result = openstack(stack, "server", "start", "life")
    assert result.returncode == 1
    assert (f"ConflictException: 409: Client Error for url: {stack['endpoint']}/servers/"
            f"{server}/action, Cannot 'start' instance {server} while it is in vm_state "
            "active") in result.stderr
    assert tuple(row(stack, server))[:4] == (host, "active", None, 1)

    result = openstack(stack, "server", "delete", "--wait", "life")
    assert (result.returncode, result.stderr) == (0, ""), stack["agent"].log_text()
    assert listed(stack) == []
    assert openstack(stack, "server", "show", server).stderr.strip() == \
        f"No Server found for {server}"
    gone = row(stack, server)
    assert (gone.vm_state, gone.power_state, gone.deleted > 0) == ("deleted", 0, True)

    # every accepted request is an action named by its request id, and the agent's line of
    # that request says what the fakevirt guest became; the refused start left none
    out = ok(openstack(stack, "server", "event", "list", server, "-f", "json"))
    recorded = [(a["Action"], a["Request ID"]) for a in reversed(json.loads(out))]
    assert [action for action, _ in recorded] == [
        "create", "stop", "start", "reboot", "reboot", "pause", "unpause", "delete"]
    outcomes = [("create", "active", "RUNNING")] + [
        (command[0], vm_state, power_name)
        for command, _, vm_state, _, power_name in LIFECYCLE] + [
        ("delete", "deleted", "NOSTATE")]
    for (action, request_id), (_, vm_state, power_name) in zip(recorded, outcomes):
        done = (f"instance {server}: {action} done: vm_state {vm_state}, "
                f"power_state {power_name}")
        assert any(done in line for line in agent_lines(stack, request_id)), (
            done, request_id, stack["agent"].log_text())


def grep(text: str, path) -> list[str]:
    """`grep -F TEXT FILE`, as a user runs it."""
    result = subprocess.run(["grep", "-F", text, str(path)], capture_output=True, text=True,
                            check=False)
    return result.stdout.splitlines()


STOP_WITH_GLOBAL_ID = """
import sys, openstack
openstack.enable_logging(debug=True, stream=sys.stderr)  # says each answer's request id
conn = openstack.connect(cloud="local")
server = conn.compute.find_server(sys.argv[1], ignore_missing=False)
with conn.global_request(sys.argv[2]) as traced:  # X-OpenStack-Request-ID on its requests
    traced.compute.stop_server(server)
"""


def test_one_stop_followed_end_to_end(stack):
    server = created(stack, "traced")["id"]
    global_id = f"req-{uuid.uuid4()}"
    result = sdk(stack, STOP_WITH_GLOBAL_ID, "traced", global_id)
    assert result.returncode == 0, result.stderr
    # keystoneauth's debug line names the API's own id for the stop (x-openstack-request-id)
    [own_id] = re.findall(rf"POST call to compute for {re.escape(stack['endpoint'])}/servers/"
                          rf"{server}/action used request id (req-[0-9a-f-]{{36}})",
                          result.stderr)
    assert own_id != global_id
    assert settled(stack, server, "SHUTOFF")["OS-EXT-STS:power_state"] == 4

    # grep for the global id: the API's lines of the request and the agent's lines of the
    # stop, each carrying both ids, the global one first; grep for the own id finds the same
    api_log, agent_log = stack["api"].log_path, stack["agent"].log_path
    api_lines, agent_found = grep(global_id, api_log), grep(global_id, agent_log)
    assert any(f'"POST /v2.1/servers/{server}/action" status 202' in line
               for line in api_lines), api_lines
    assert any(f"instance {server}: stop done: vm_state stopped, power_state SHUTDOWN" in line
               for line in agent_found), stack["agent"].log_text()
    assert all(f"[{global_id} {own_id}" in line for line in api_lines + agent_found)
    assert (grep(own_id, api_log), grep(own_id, agent_log)) == (api_lines, agent_found)

    # the instance action is the API's request: shown by its own id, not by the global one
    out = ok(openstack(stack, "server", "event", "list", server, "-f", "json"))
    assert [(a["Action"], a["Request ID"]) for a in json.loads(out)][0] == ("stop", own_id)
    assert global_id not in out
    shown = json.loads(ok(openstack(stack, "server", "event", "show", server, own_id,
                                    "-f", "json")))
    assert (shown["action"], shown["request_id"],
            [(e["event"], e["result"]) for e in shown["events"]]) == (
        "stop", own_id, [("compute_stop_instance", "Success")])
    refused = openstack(stack, "server", "event", "show", server, global_id)
    assert refused.returncode == 1
    assert (f"Action for request_id {global_id} on instance {server} not found"
            in refused.stderr)
    ok(openstack(stack, "server", "delete", "--wait", server))
