"""The compute RPC under faults, against real agent processes and a real RabbitMQ: a broker
that is not there at start, then goes away and comes back under a running agent (the agent
killed in the middle of each operation is tests/e2e/test_rpc_crash_recovery.py). Each test has
a virtual host of its own: the broker 'goes away' for that agent only (the vhost deleted, and
created again), not for other tests."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from agent import vocabulary as states
from agent.context import RequestContext
from agent.db.engine import make_database
from agent.db.models import Instance
from agent.rpc.client import RpcClient
from agent.rpc.transport import parse
from tests.agent_process import (AgentProcess, NotifySocket, agent_command, service_row,
                                 wait_for, write_config)
from tests.conftest import require_tier
from tests.rabbit import BROKER, broker_reachable, rabbitmqctl, unique_host

G1 = "7e1d2b63-9b4f-4a68-8b1f-00000000001a"


@pytest.fixture
def vhost():
    """A vhost name and its transport_url; the vhost itself is created by the test (or not)
    and removed at the end."""
    require_tier("rabbitmq", broker_reachable(), f"no broker on {BROKER[0]}:{BROKER[1]}")
    name = f"agent-test-{uuid.uuid4().hex[:12]}"
    yield name, f"rabbit://guest:guest@{BROKER[0]}:{BROKER[1]}/{name}"
    rabbitmqctl("delete_vhost", name, check=False)


def create_vhost(name):
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def host_config(tmp_path, host, url):
    scenario = tmp_path / "scenario.toml"
    scenario.write_text("\n".join([
        "[host]", f'hostname = "{host}"', "vcpus = 4", "memory_mb = 8192", "local_gb = 50", "",
        "[[domains]]", f'uuid = "{G1}"', 'name = "g1"', 'power_state = "running"', "",
        "[[instances]]", f'uuid = "{G1}"', 'display_name = "g1"', 'vm_state = "active"', ""]),
        encoding="utf-8")
    config = write_config(tmp_path, host=host, transport_url=url, scenario=scenario)
    seeded = agent_command("db", "seed", str(scenario), "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    return config


def start_agent(tmp_path, config, name, env=None):
    notify = NotifySocket(tmp_path / f"notify-{name}")
    agent = AgentProcess(config, tmp_path / f"{name}.log",
                         env={"NOTIFY_SOCKET": notify.path, **(env or {})})
    assert notify.receive_until("READY=1") is not None, agent.log_text()
    notify.close()
    return agent


def g1(db):
    with db.sessions() as session:
        return session.execute(select(Instance.vm_state, Instance.task_state,
                                      Instance.power_state).where(Instance.uuid == G1)).one()


def test_broker_away_at_start_and_under_a_running_agent(tmp_path, vhost):
    host = unique_host("brk")
    config = host_config(tmp_path, host, vhost[1])  # its vhost does not exist yet
    db = make_database(f"sqlite:///{tmp_path}/state/agent.sqlite")
    agent = start_agent(tmp_path, config, "agent")
    try:
        # the agent runs and beats without the broker, and says so once
        url = f"sqlite:///{tmp_path}/state/agent.sqlite"
        first_beat = service_row(url, host).last_seen_up
        assert wait_for(lambda: service_row(url, host).last_seen_up != first_beat)
        assert agent.log_text().count("unreachable") == 1, agent.log_text()
        create_vhost(vhost[0])
        assert wait_for(lambda: "reachable again" in agent.log_text()), agent.log_text()
        stop_and_check(db, host, vhost[1], agent)
        # the broker goes away under the running agent (its vhost deleted) and comes back
        rabbitmqctl("delete_vhost", vhost[0])
        assert wait_for(lambda: agent.log_text().count("unreachable") == 2), agent.log_text()
        create_vhost(vhost[0])
        assert wait_for(lambda: agent.log_text().count("reachable again") == 2), \
            agent.log_text()
        start_and_check(db, host, vhost[1], agent)
        assert agent.proc.poll() is None
    finally:
        agent.stop()
        db.dispose()


def stop_and_check(db, host, url, agent):
    cast_and_wait(db, host, url, agent, "stop_instance", states.POWERING_OFF, states.STOPPED)


def start_and_check(db, host, url, agent):
    cast_and_wait(db, host, url, agent, "start_instance", states.POWERING_ON, states.ACTIVE)


def cast_and_wait(db, host, url, agent, method, task_state, vm_state):
    with db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == G1)
                        .values(task_state=task_state))
    with RpcClient(parse(url)) as client:
        client.cast(host, method, "6.0", RequestContext.new(), instance={"uuid": G1})
    assert wait_for(lambda: tuple(g1(db))[:2] == (vm_state, None)), agent.log_text()
