"""One machine with no broker configured: the agent on its defaults (SQLite, fakevirt, no
transport_url) consumes compute.<host> on the SQLite broker file under state_path, and
`agent server create` / `stop` in other processes reach it through that file."""

from __future__ import annotations

import json

import pytest

from agent.rpc.transport import BROKER_FILE
from tests.agent_process import agent_command, ready_agent, write_config


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
