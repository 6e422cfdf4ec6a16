"""The operator's flow end to end: `agent server create` (scheduled) then stop, start, reboot
(soft and hard), pause, unpause and delete with --wait, against a running agent on fakevirt
through a real RabbitMQ; the request id each command prints is in the agent's log lines of that
operation and in `agent server events`. And a create with no valid host."""

from __future__ import annotations

import json

import pytest

from agent.db.engine import make_database
from tests.agent_process import (agent_command, compute_node_saved, host_scenario, ready_agent,
                                 wait_for, write_config)
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def running(rabbit_vhost, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server-flow")
    host = unique_host("flow")
    config = write_config(tmp, host=host, transport_url=rabbit_vhost[1], service_down_time=30,
                          scenario=host_scenario(tmp, host))
    with ready_agent(config, tmp) as agent:
        assert wait_for(lambda: compute_node_saved(tmp)), agent.log_text()
        yield host, agent, config


def server(config, *args):
    return agent_command("server", *args, "--config", str(config))


def request_id(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("request "))


def show(config, key):
    result = server(config, "show", key, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_create_then_every_action(running):
    host, agent, config = running
    made = server(config, "create", "--flavor", "m1.tiny", "--name", "flow1", "--wait",
                  "--timeout", "60")
    assert made.returncode == 0, made.stderr + agent.log_text()
    assert f"scheduled to host {host}" in made.stdout
    assert "compute_build_and_run_instance: Success" in made.stdout
    shown = show(config, "flow1")
    assert (shown["status"], shown["vm_state"], shown["task_state"], shown["power_state"]) == (
        "ACTIVE", "active", None, "Running")
    requests = {"create": request_id(made.stdout)}
    steps = [("stop", (), "SHUTOFF", "stopped", "Shutdown"),
             ("start", (), "ACTIVE", "active", "Running"),
             ("reboot", (), "ACTIVE", "active", "Running"),
             ("reboot", ("--hard",), "ACTIVE", "active", "Running"),
             ("pause", (), "PAUSED", "paused", "Paused"),
             ("unpause", (), "ACTIVE", "active", "Running")]
    for action, extra, status, vm_state, power in steps:
        result = server(config, action, "flow1", *extra, "--wait", "--timeout", "60")
        assert result.returncode == 0, result.stderr + agent.log_text()
        requests[f"{action}{''.join(extra)}"] = request_id(result.stdout)
        shown = show(config, "flow1")
        assert (shown["status"], shown["vm_state"], shown["task_state"],
                shown["power_state"]) == (status, vm_state, None, power), action
    uuid = shown["id"]
    gone = server(config, "delete", "flow1", "--wait", "--timeout", "60")
    assert gone.returncode == 0, gone.stderr + agent.log_text()
    requests["delete"] = request_id(gone.stdout)
    assert server(config, "show", "flow1").returncode == 1  # gone from the live instances
    listed = server(config, "events", uuid, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    recorded = [(a["action"], a["request_id"], [(e["event"], e["result"]) for e in a["events"]])
                for a in json.loads(listed.stdout)["actions"]]
    assert [r[1] for r in recorded] == list(requests.values())
    assert [r[0] for r in recorded] == ["create", "stop", "start", "reboot", "reboot",
                                        "pause", "unpause", "delete"]
    assert all(len(events) == 1 and events[0][1] == "Success" for _, _, events in recorded)
    log = agent.log_text()
    for req in requests.values():
        assert any(req in line and uuid in line for line in log.splitlines()), (req, log)


def test_no_valid_host(running):
    host, agent, config = running
    assert agent_command("flavor", "create", "giant", "--vcpus", "64", "--ram", "1024",
                         "--config", str(config)).returncode == 0
    result = server(config, "create", "--flavor", "giant", "--name", "toobig")
    assert result.returncode == 1
    assert request_id(result.stdout).startswith("req-")
    assert f"{host} ({host}): CoreFilter: 64 vCPUs requested, the node has 8" in result.stderr
    assert (show(config, "toobig")["status"], show(config, "toobig")["vm_state"]) == (
        "ERROR", "error")


def test_evacuate_ends_with_the_destination_spawning_the_guests(running):
    from agent.db.models import Instance, Service
    from agent.registry import register_service

    host, agent, config = running
    url = f"sqlite:///{config.parent}/state/agent.sqlite"
    db = make_database(url)
    try:
        source = unique_host("dead")
        service = register_service(db, source, starting=False)
        with db.sessions.begin() as session:
            session.query(Service).filter(Service.id == service.id).update(
                {"forced_down": True})
            for name, vm_state in (("evac-a", "active"), ("evac-s", "stopped")):
                session.add(Instance(display_name=name, host=source, node=source,
                                     vm_state=vm_state, power_state=1 if vm_state == "active"
                                     else 4, vcpus=1, memory_mb=64, deleted=0))
    finally:
        db.dispose()
    moved = agent_command("evacuate", "--host", source, "--to", host, "--config", str(config))
    assert moved.returncode == 0, moved.stderr
    assert f"rebuild_instance(recreate=True) cast to host {host} for 2 instances" in moved.stdout
    req = next(w for w in moved.stdout.split() if w.startswith("req-")).rstrip(":")

    def settled():
        a, s = show(config, "evac-a"), show(config, "evac-s")
        return a["task_state"] is None and s["task_state"] is None and (a, s)
    a, s = wait_for(settled) or (show(config, "evac-a"), show(config, "evac-s"))
    assert (a["host"], a["status"], a["vm_state"], a["power_state"]) == (
        host, "ACTIVE", "active", "Running"), agent.log_text()
    assert (s["host"], s["status"], s["vm_state"]) == (host, "SHUTOFF", "stopped")
    listed = json.loads(server(config, "events", "evac-a", "--format", "json").stdout)
    assert [(x["action"], x["request_id"], [e["result"] for e in x["events"]])
            for x in listed["actions"]] == [("evacuate", req, ["Success"])]
