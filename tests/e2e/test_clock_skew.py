"""A host whose clock is an hour off is still listed up, and listed down once it stops beating.

The agent runs under `faketime` (its wall clock one hour ahead or behind); the operator's
`agent services list` runs on the real clock. The database is PostgreSQL, whose server clock is
the real one: with the embedded SQLite database the "database clock" would be the agent's own
(faked) clock: the last test shows what that means (a live, skewed agent listed down, its
offset n/a), as the README says.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal

import pytest

from tests.agent_process import (AgentProcess, NotifySocket, agent_command, listed_service,
                                 wait_for, write_config)
from tests.conftest import require_tier

pytestmark = [pytest.mark.faketime]

HOUR = 3600.0


@pytest.fixture
def faketime():
    path = shutil.which("faketime")
    require_tier("faketime", path is not None, "the faketime tool is not installed")
    return path


@pytest.mark.postgresql
@pytest.mark.parametrize(("offset", "expected"), [("+3600s", HOUR), ("-3600s", -HOUR)],
                         ids=["one-hour-ahead", "one-hour-behind"])
def test_skewed_host_is_up_then_down_after_it_is_killed(offset, expected, faketime,
                                                         postgresql_url, tmp_path):
    host = "skewed-" + ("ahead" if expected > 0 else "behind")
    config = write_config(tmp_path, database_url=postgresql_url, host=host,
                          report_interval=1, service_down_time=3)
    notify = NotifySocket(tmp_path / "notify.sock")
    # Only the wall clock is skewed, as on a real host without NTP: the monotonic clock that
    # paces the heartbeat is left alone.
    agent = AgentProcess(config, tmp_path / "agent.log", wrapper=[faketime, "-f", offset],
                         env={"NOTIFY_SOCKET": notify.path,
                              "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    agent_pid = None
    try:
        ready = notify.receive_until("READY=1")
        assert ready is not None, agent.log_text()
        # faketime runs the agent as its child: the agent's own pid is the notifier's.
        agent_pid = ready.pid

        # Up, through several beats, with the host's offset measured and shown.
        def up_after_beats():
            entry = listed_service(config, host)
            return entry if entry and entry["state"] == "up" and entry["report_count"] >= 3 \
                else None

        entry = wait_for(up_after_beats)
        assert entry, (listed_service(config, host), agent.log_text())
        assert entry["clock_offset_seconds"] == pytest.approx(expected, abs=60)
        table = agent_command("services", "list", "--config", str(config), "--host", host)
        assert re.search(r"\bup\b", table.stdout)
        shown = re.search(r"([+-]\d+\.\d) s", table.stdout)
        assert shown and float(shown.group(1)) == pytest.approx(expected, abs=60), table.stdout

        os.kill(agent_pid, signal.SIGKILL)
        agent.wait()

        def down():
            entry = listed_service(config, host)
            return entry if entry and entry["state"] == "down" else None

        entry = wait_for(down)
        assert entry, listed_service(config, host)
        assert re.match(r"last seen \d+ s ago", entry["down_reason"])
    finally:
        if agent_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent_pid, signal.SIGKILL)
        agent.stop()
        notify.close()


@pytest.mark.parametrize(("offset", "reason"), [
    ("+3600s", r"last beat \d+ s in the future"), ("-3600s", r"last seen \d+ s ago")],
    ids=["one-hour-ahead", "one-hour-behind"])
def test_on_sqlite_a_skewed_live_process_is_shown_down(offset, reason, faketime, tmp_path):
    # What the README says of SQLite: with no database server, the agent's own (skewed) clock
    # stamps its beats, so the operator's process, on the right clock, sees it down; and the
    # offset cannot be measured.
    config = write_config(tmp_path, database_url=f"sqlite:///{tmp_path}/agent.sqlite",
                          host="skewed", report_interval=1, service_down_time=3)
    notify = NotifySocket(tmp_path / "notify.sock")
    agent = AgentProcess(config, tmp_path / "agent.log", wrapper=[faketime, "-f", offset],
                         env={"NOTIFY_SOCKET": notify.path,
                              "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    try:
        assert notify.receive_until("READY=1") is not None, agent.log_text()

        def beating_but_down():
            entry = listed_service(config, "skewed")
            return entry if entry and entry["report_count"] >= 3 else None

        entry = wait_for(beating_but_down)
        assert entry, (listed_service(config, "skewed"), agent.log_text())
        assert entry["state"] == "down" and re.match(reason, entry["down_reason"])
        assert entry["clock_offset_seconds"] is None
        table = agent_command("services", "list", "--config", str(config))
        assert " n/a " in table.stdout
        assert "note: SQLite has no database server clock" in table.stdout
    finally:
        agent.stop()
        notify.close()
