"""`agent --once --dry-run` writes nothing anywhere: next to a running daemon of the same host
its service row stays exactly as the daemon left it (whether the dry run succeeds or its driver
cannot connect), the database file does not change, and for a new host no service row, node
row, compute_id or state directory appears."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from agent.config import load_config
from agent.db.models import Base
from agent.service import AgentService
from agent.systemd import Notifier
from tests.agent_process import REPO_ROOT, agent_command, ready_agent, write_config
from tests.conftest import import_libvirt

HOST = "dry-1"
# The daemon beats once at start and then not for an hour, and runs no periodic job: whatever
# changes in the database while it runs was written by someone else.
QUIET = {"report_interval": 3600, "service_down_time": 86400,
         "update_resources_interval": -1, "sync_power_state_interval": -1}


def database_dump(path) -> dict[str, list]:
    """Every row of every agent table, read with a plain connection."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in Base.metadata.tables}


def file_digests(directory) -> dict[str, str]:
    """sha256 of each file in `directory` except SQLite's shared-memory index (-shm), which
    every reader updates."""
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(directory)) if not name.endswith("-shm")}


@pytest.fixture
def daemon(tmp_path):
    """A running agent daemon for HOST, started (READY=1) and then quiet."""
    config = write_config(tmp_path, host=HOST, **QUIET)
    with ready_agent(config, tmp_path, name="daemon"):
        yield config


def dry_run(config, *args):
    return agent_command("--config", str(config), "--once", "--dry-run", *args)


def test_successful_dry_run_leaves_a_live_daemons_row_and_the_database_as_they_were(
        tmp_path, daemon):
    state = tmp_path / "state"
    before, files = database_dump(state / "agent.sqlite"), file_digests(state)
    (service,) = before["services"]
    result = dry_run(daemon)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("DRY RUN")
    after = database_dump(state / "agent.sqlite")
    assert after["services"] == [service]  # disabled, reason, last_seen_up, report_count, ...
    assert after == before
    assert file_digests(state) == files


def test_failing_dry_run_leaves_a_live_daemons_row_as_it_was(tmp_path, daemon):
    import_libvirt()
    state = tmp_path / "state"
    before, files = database_dump(state / "agent.sqlite"), file_digests(state)
    missing = tmp_path / "missing-node.xml"
    result = dry_run(daemon, "--driver", "libvirt", "--connection-uri", f"test://{missing}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("agent: error: ")
    after = database_dump(state / "agent.sqlite")
    assert after["services"] == before["services"]
    assert "start-up failed" not in str(after["services"])
    assert after == before
    assert file_digests(state) == files


@pytest.mark.parametrize("driver", [(), ("--driver", "libvirt", "--connection-uri",
                                         "test:///default")], ids=["fake", "libvirt"])
def test_dry_run_of_a_new_host_creates_no_row_no_identity_and_no_directory(tmp_path, daemon,
                                                                            driver):
    if driver:
        import_libvirt()
    state = tmp_path / "state"
    before = database_dump(state / "agent.sqlite")
    fresh = tmp_path / "fresh-state"
    result = dry_run(daemon, "--host", "dry-2", "--state-path", str(fresh),
                     "--db", f"sqlite:///{state}/agent.sqlite", "--format", "json", *driver)
    assert result.returncode == 0, result.stderr
    assert "host dry-2 has no service row" in result.stderr
    assert database_dump(state / "agent.sqlite") == before
    assert not fresh.exists()  # no compute_id, no instances directory, no directory at all


def test_dry_run_on_a_missing_database_creates_nothing(tmp_path):
    state = tmp_path / "state"
    result = agent_command("--host", HOST, "--state-path", str(state), "--once", "--dry-run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"agent: error: database sqlite:///{state}/agent.sqlite: no such file "
        f"{state}/agent.sqlite (opened read-only: nothing is created; 'agent db sync', or a "
        "start without --dry-run, creates it)")
    assert os.listdir(tmp_path) == []


def test_dry_run_on_an_older_schema_upgrades_nothing(tmp_path):
    from alembic import command

    from agent.db import migrate
    from agent.db.engine import make_database

    path = tmp_path / "state" / "agent.sqlite"
    db = make_database(f"sqlite:///{path}")
    try:
        with db.engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), migrate.REVISIONS[0])
    finally:
        db.dispose()
    before = path.read_bytes()
    result = agent_command("--host", HOST, "--state-path", str(tmp_path / "state"), "--once",
                           "--dry-run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"agent: error: database sqlite:///{path} has schema revision {migrate.REVISIONS[0]}, "
        f"expected {migrate.HEAD}: run 'agent db sync' (a dry run creates and upgrades "
        "nothing)")
    assert path.read_bytes() == before


def test_dry_run_without_once_is_refused_as_bad_input(tmp_path):
    result = agent_command("--host", HOST, "--state-path", str(tmp_path / "state"),
                           "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "agent: error: --dry-run needs --once: a dry run is one start-up pass that changes "
        "nothing, not a daemon")
    assert os.listdir(tmp_path) == []


def table_rows(url) -> dict[str, list]:
    from sqlalchemy import select

    from agent.db.engine import make_database

    db = make_database(url)
    try:
        with db.engine.connect() as conn:
            return {name: conn.execute(select(table).order_by(*table.primary_key.columns))
                    .all() for name, table in Base.metadata.tables.items()}
    finally:
        db.dispose()


def test_dry_run_writes_nothing_on_every_backend(tmp_path, any_db_url):
    """The same start-up pass, in process, on each database: first for real (a row, a node),
    then as a dry run, which leaves every table as it was."""
    from agent.commands.daemon import compute_host_work

    config = write_config(tmp_path, database_url=any_db_url, host=HOST, **QUIET)
    conf = load_config(str(config))
    AgentService(conf, notifier=Notifier(None), host_work_factory=compute_host_work).run_once()
    before = table_rows(any_db_url)
    assert len(before["services"]) == 1 and len(before["compute_nodes"]) == 1
    report = AgentService(conf, dry_run=True, notifier=Notifier(None),
                          host_work_factory=compute_host_work).run_once()
    assert report.dry_run is True
    assert table_rows(any_db_url) == before


def test_dry_run_of_every_kind_of_action_writes_nothing_on_every_backend(tmp_path, any_db_url):
    """The worked example (an evacuated guest to destroy, an interrupted power-off, paused and
    crashed guests, a new node) planned in a dry run on each database: every write the pass
    would make goes through a database that refuses writes, so a write path that forgot the
    dry run fails this test; the tables and the state directory stay as they were."""
    from agent.commands.daemon import compute_host_work
    from agent.db.engine import make_database
    from fakevirt.scenario import load_scenario
    from fakevirt.seed import seed_database

    example = REPO_ROOT / "etc" / "scenario.example.toml"
    db = make_database(any_db_url)
    try:
        seed_database(db, load_scenario(str(example)))
    finally:
        db.dispose()
    before = table_rows(any_db_url)
    config = write_config(tmp_path, database_url=any_db_url, host="compute-1", **QUIET)
    (tmp_path / "state").mkdir()
    conf = load_config(str(config), {("fakevirt", "scenario"): str(example)})
    report = AgentService(conf, dry_run=True, notifier=Notifier(None),
                          host_work_factory=compute_host_work).run_once()
    assert [e.action for e in report.evacuated] == ["evacuated-destroyed"]
    assert "powered-off" in {i.action for i in report.instances}
    assert [n.saved for n in report.nodes] == ["would-create"]
    assert table_rows(any_db_url) == before
    assert os.listdir(tmp_path / "state") == []


EVACUATED = "44444444-4444-4444-8444-444444444444"  # the worked example's evacuated instance


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "real-run"])
def test_the_evacuated_guest_log_lines(tmp_path, sqlite_url, caplog, dry):
    """The worked example's evacuated guest: a dry run logs the intent and then that it would
    destroy it, never that it is destroying it, and leaves the evacuation record as it was; a
    real run logs the same intent, no "would", and completes the record."""
    import logging

    from sqlalchemy import select

    from agent.commands.daemon import compute_host_work
    from agent.db.engine import make_database
    from agent.db.models import Migration
    from fakevirt.scenario import load_scenario
    from fakevirt.seed import seed_database

    example = REPO_ROOT / "etc" / "scenario.example.toml"
    url = sqlite_url
    db = make_database(url)
    try:
        seed_database(db, load_scenario(str(example)))
    finally:
        db.dispose()
    config = write_config(tmp_path, database_url=url, host="compute-1", **QUIET)
    (tmp_path / "state").mkdir()
    conf = load_config(str(config), {("fakevirt", "scenario"): str(example)})
    service = AgentService(conf, dry_run=dry, notifier=Notifier(None),
                           host_work_factory=compute_host_work)
    with caplog.at_level(logging.INFO):
        report = service.run_once()
    lines = [r.getMessage() for r in caplog.records if EVACUATED in r.getMessage()]
    intent = (f"instance {EVACUATED} was evacuated (migration 1): its guest instance-00000004 "
              "here is to be destroyed, with its disks")
    assert intent in lines, lines
    assert not [line for line in lines if "destroying" in line], lines
    would = [line for line in lines if "would destroy" in line]
    if dry:
        assert would == [f"dry run: instance {EVACUATED}: would destroy (with its disks)"]
        assert lines.index(intent) < lines.index(would[0])
    else:
        assert would == []
    assert [e.action for e in report.evacuated] == ["evacuated-destroyed"]
    # the evacuation record: completed by a real run only
    db = make_database(url)
    try:
        with db.sessions() as session:
            saved = session.scalars(select(Migration.status)
                                    .where(Migration.instance_uuid == EVACUATED)).all()
    finally:
        db.dispose()
    assert saved == ["done" if dry else "completed"]
