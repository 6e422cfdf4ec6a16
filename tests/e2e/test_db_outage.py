"""The agent outlives a database outage: a private PostgreSQL server is stopped under it and
started again, or frozen (SIGSTOP on every server process: connections stay open and nothing
answers) and thawed. The agent keeps running, its beats fail within their time limit instead of
hanging, it logs the loss once and the recovery once, and its beats resume."""

from __future__ import annotations

import signal

import pytest

from tests.agent_process import (AgentProcess, NotifySocket, agent_command, service_row,
                                 wait_for, write_config)

pytestmark = pytest.mark.postgresql

LOSS = "heartbeat: cannot reach the database"
RECOVERY = "heartbeat recovered"
STILL_FAILING = "heartbeat: still failing"


OUTAGES = {"stopped": ("stop", "start"), "frozen": ("freeze", "thaw")}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_agent_survives_a_database_outage(throwaway_postgresql, tmp_path, outage):  # noqa: F811
    server = throwaway_postgresql
    begin, end = (getattr(server, name) for name in OUTAGES[outage])
    config = write_config(tmp_path, database_url=server.url, host="outage-host",
                          report_interval=1, service_down_time=5)
    with open(config, "a", encoding="utf-8") as fh:
        fh.write("statement_timeout = 2\n")  # [database] is the file's last section
    synced = agent_command("db", "sync", "--config", str(config))
    assert synced.returncode == 0, synced.stderr
    notify = NotifySocket(tmp_path / "notify.sock")
    # --debug: each failed beat during the outage leaves a debug line to count.
    agent = AgentProcess(config, tmp_path / "agent.log", args=["--debug"],
                         env={"NOTIFY_SOCKET": notify.path})
    try:
        assert notify.receive_until("READY=1") is not None, agent.log_text()
        assert wait_for(lambda: (row := service_row(server.url, "outage-host")) is not None
                        and row.report_count >= 2), agent.log_text()

        begin()
        try:
            assert wait_for(lambda: agent.log_text().count(STILL_FAILING) >= 3), \
                agent.log_text()
            assert agent.proc.poll() is None
        finally:
            end()

        count_after_restart = wait_for(lambda: (row := service_row(server.url, "outage-host"))
                                       and row.report_count)
        assert wait_for(lambda: service_row(server.url, "outage-host").report_count
                        >= count_after_restart + 2), agent.log_text()
        assert wait_for(lambda: RECOVERY in agent.log_text())

        log = agent.log_text()
        assert agent.proc.poll() is None
        assert log.count(LOSS) == 1, log
        assert log.count(RECOVERY) == 1, log

        agent.send(signal.SIGTERM)
        assert agent.wait() == 0
    finally:
        agent.stop()
        notify.close()
