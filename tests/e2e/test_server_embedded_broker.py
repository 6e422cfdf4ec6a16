"""One machine with no broker configured: the agent on its defaults (SQLite, fakevirt, no
transport_url) consumes compute.<host> on the SQLite broker file under state_path, and
`agent server create` / `stop` in other processes reach it through that file; so does
`openstack server create` / `stop` against `agent api` on the same configuration."""

from __future__ import annotations

import json

import pytest

from agent.rpc.transport import BROKER_FILE
from tests.agent_process import agent_command, ready_agent, wait_for, write_config
from tests.api_clients import api_stack, openstack


@pytest.fixture
def running(tmp_path):
    config = write_config(tmp_path, host="solo", service_down_time=30)
    assert "transport_url" not in config.read_text(encoding="utf-8")
    with ready_agent(config, tmp_path) as agent:
        yield agent, config, tmp_path


def server(config, *args):
    return agent_command("server", *args, "--config", str(config))


def test_create_and_stop_without_a_configured_broker(running):
    agent, config, tmp = running
    broker = tmp / "state" / BROKER_FILE
    assert broker.exists() and broker.stat().st_mode & 0o007 == 0, agent.log_text()
    made = server(config, "create", "--flavor", "m1.tiny", "--name", "x", "--wait",
                  "--timeout", "60")
    assert made.returncode == 0, made.stderr + agent.log_text()
    assert "compute_build_and_run_instance: Success" in made.stdout
    shown = json.loads(server(config, "show", "x", "--format", "json").stdout)
    assert (shown["status"], shown["vm_state"], shown["task_state"], shown["power_state"]) == (
        "ACTIVE", "active", None, "Running")
    stopped = server(config, "stop", "x", "--wait", "--timeout", "60")
    assert stopped.returncode == 0, stopped.stderr + agent.log_text()
    shown = json.loads(server(config, "show", "x", "--format", "json").stdout)
    assert (shown["status"], shown["vm_state"], shown["task_state"], shown["power_state"]) == (
        "SHUTOFF", "stopped", None, "Shutdown")
    events = json.loads(server(config, "events", "x", "--format", "json").stdout)
    assert sorted((a["action"], [(e["event"], e["result"]) for e in a["events"]])
                  for a in events["actions"]) == [
        ("create", [("compute_build_and_run_instance", "Success")]),
        ("stop", [("compute_stop_instance", "Success")])]


def test_openstack_server_stop_through_agent_api_without_a_configured_broker(tmp_path):
    """`agent api` on the embedded default casts as `agent server` does (the SQLite broker
    file): the running agent builds, then stops the server; the stop's request id is the one
    the agent logs and `server event list` names."""
    with api_stack(tmp_path, "solo-api") as stack:
        assert "transport_url" not in stack["config"].read_text(encoding="utf-8")
        assert "no transport_url" not in stack["api"].log_text()
        made = openstack(stack, "server", "create", "--flavor", "m1.tiny", "--image", "cirros",
                         "--wait", "web", "-f", "json")
        assert made.returncode == 0, made.stderr + stack["agent"].log_text()
        uuid = json.loads(made.stdout)["id"]
        assert json.loads(made.stdout)["status"] == "ACTIVE"
        stopped = openstack(stack, "server", "stop", "web")
        assert (stopped.returncode, stopped.stderr) == (0, "")

        def show():
            result = openstack(stack, "server", "show", uuid, "-f", "json")
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)
        shown = wait_for(lambda: (s := show())["OS-EXT-STS:task_state"] is None
                         and s["status"] == "SHUTOFF" and s, step=0.5)
        assert shown, (show(), stack["agent"].log_text())
        assert (shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:power_state"]) == (
            "stopped", 4)
        listed = openstack(stack, "server", "event", "list", uuid, "-f", "json")
        assert listed.returncode == 0, listed.stderr
        [stop] = [a for a in json.loads(listed.stdout) if a["Action"] == "stop"]
        done = [line for line in stack["agent"].log_text().splitlines()
                if stop["Request ID"] in line and "stop done" in line]
        assert len(done) == 1, stack["agent"].log_text()
