"""One agent per host, with real agent processes on a shared PostgreSQL database: a second
machine started with the same `host` (its own state directory) is refused and says which host
and since when; the same installation restarted right after a crash is not; a running agent
says so when another one beats into its row."""

from __future__ import annotations

import signal

import pytest

from agent.db.engine import make_database
from agent.heartbeat import Heartbeat
from tests.agent_process import (DEADLINE, AgentProcess, NotifySocket, service_row, wait_for,
                                 write_config)

HOST = "compute-7"


@pytest.fixture
def machine(tmp_path, postgresql_url):
    """machine(name) -> (config, notify socket): an installation with its own state directory
    and its own hypervisor (a fakevirt node named after the machine), all running as HOST."""
    sockets: list[NotifySocket] = []

    def make(name: str):
        directory = tmp_path / name
        directory.mkdir()
        scenario = directory / "scenario.toml"
        scenario.write_text(f'[host]\nhostname = "{name}"\nvcpus = 4\n', encoding="utf-8")
        config = write_config(directory, database_url=postgresql_url, host=HOST,
                              service_down_time=10, scenario=scenario)
        sock = NotifySocket(directory / "notify.sock")
        sockets.append(sock)
        return config, sock

    yield make
    for sock in sockets:
        sock.close()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []

    def start(config, sock, log_name: str) -> AgentProcess:
        agent = AgentProcess(config, config.parent / log_name,
                             env={"NOTIFY_SOCKET": sock.path})
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def node_identity(config) -> str:
    return (config.parent / "state" / "compute_id").read_text().strip()


def test_second_machine_with_the_same_host_is_refused(machine, agents, postgresql_url):
    config_a, sock_a = machine("machine-a")
    config_b, sock_b = machine("machine-b")
    first = agents(config_a, sock_a, "agent.log")
    assert sock_a.receive_until("READY=1") is not None, first.log_text()
    row = service_row(postgresql_url, HOST)
    started_at = row.started_at.replace(microsecond=0).isoformat(sep=" ")

    second = agents(config_b, sock_b, "agent.log")

    assert second.wait(DEADLINE) == 1
    last = second.log_text().strip().splitlines()[-1]
    assert last.startswith(f"agent: error: host '{HOST}' is already run by another agent "
                           f"(identity {node_identity(config_a)}, since {started_at} UTC;")
    assert "refusing to start (nothing was changed)" in last
    assert not (config_b.parent / "state" / "compute_id").exists()
    # The first agent runs on, untouched: its row enabled, its identity on it, still beating.
    assert first.proc.poll() is None
    count = service_row(postgresql_url, HOST).report_count
    assert wait_for(lambda: service_row(postgresql_url, HOST).report_count >= count + 2)
    row = service_row(postgresql_url, HOST)
    assert (row.disabled, row.last_seen_by) == (False, node_identity(config_a))
    assert "another agent" not in first.log_text()


def test_restart_right_after_a_crash_is_not_refused(machine, agents, postgresql_url):
    config, sock = machine("machine-a")
    first = agents(config, sock, "first.log")
    assert sock.receive_until("READY=1") is not None, first.log_text()
    first.send(signal.SIGKILL)
    first.wait(DEADLINE)

    again = agents(config, sock, "again.log")  # within service_down_time of the last beat

    assert sock.receive_until("READY=1") is not None, again.log_text()
    row = service_row(postgresql_url, HOST)
    assert (row.disabled, row.last_seen_by) == (False, node_identity(config))


def test_running_agent_logs_an_error_when_another_beats_into_its_row(machine, agents,
                                                                   postgresql_url):
    config, sock = machine("machine-a")
    agent = agents(config, sock, "agent.log")
    assert sock.receive_until("READY=1") is not None, agent.log_text()
    intruder = "99999999-9999-4999-8999-999999999999"
    db = make_database(postgresql_url)
    try:
        service_id = service_row(postgresql_url, HOST).id
        assert Heartbeat(db, service_id, 1, agent_id=intruder).beat()
    finally:
        db.dispose()
    expected = (f"another agent (identity {intruder}) is beating into the service row of host "
                f"'{HOST}' (id {service_id}), which this agent (identity "
                f"{node_identity(config)}) runs")
    assert wait_for(lambda: expected in agent.log_text()), agent.log_text()
    # It keeps its row: the next beats carry its identity again.
    assert wait_for(lambda: service_row(postgresql_url, HOST).last_seen_by
                    == node_identity(config))
