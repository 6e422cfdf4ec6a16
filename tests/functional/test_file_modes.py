"""The files the agent creates, under umask 000 and with symbolic links planted where it writes:
directories 0750, files 0640, nothing written through a link (agent.files)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from agent.compute.node_identity import NodeIdentityStore
from agent.db.engine import make_database
from agent.errors import StartupError
from tests.agent_process import write_config

VICTIM_TEXT = "precious\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def run_agent(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path, umask=0)


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text(VICTIM_TEXT, encoding="utf-8")
    return path


def test_once_under_umask_000_creates_directories_0750_and_files_0640(tmp_path):
    state = tmp_path / "new" / "state"
    log = tmp_path / "agent.log"
    config = write_config(tmp_path, log_file=log, compute_driver="fake")
    config.write_text(config.read_text().replace(str(tmp_path / "state"), str(state)))
    result = run_agent(tmp_path, config, "--once")
    assert result.returncode == 0, result.stderr
    assert {p: mode(p) for p in (tmp_path / "new", state)} == \
        {tmp_path / "new": 0o750, state: 0o750}
    files = [state / "compute_id", state / "agent.sqlite", log]
    assert {p.name: mode(p) for p in files} == {p.name: 0o640 for p in files}
    assert not [p.name for p in state.iterdir() if p.name.endswith(".tmp")]


def test_sqlite_wal_and_shm_files_take_the_database_files_mode(tmp_path):
    old = os.umask(0)
    try:
        db = make_database(f"sqlite:///{tmp_path}/db/agent.sqlite")
        try:
            with db.engine.begin() as conn:
                conn.execute(text("CREATE TABLE t (x INTEGER)"))
                conn.execute(text("INSERT INTO t VALUES (1)"))
            with db.engine.connect() as conn:
                assert conn.execute(text("SELECT x FROM t")).scalar() == 1
                names = ("agent.sqlite", "agent.sqlite-wal", "agent.sqlite-shm")
                assert {n: mode(tmp_path / "db" / n) for n in names} == \
                    {n: 0o640 for n in names}
                assert mode(tmp_path / "db") == 0o750
        finally:
            db.dispose()
    finally:
        os.umask(old)


def test_symlink_planted_at_the_old_temporary_name_is_not_followed(tmp_path):
    target = victim(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    (state / "compute_id.tmp").symlink_to(target)
    config = write_config(tmp_path, compute_driver="fake")
    result = run_agent(tmp_path, config, "--once")
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == VICTIM_TEXT
    assert not (state / "compute_id").is_symlink()
    uuid.UUID((state / "compute_id").read_text(encoding="utf-8").strip())


def test_node_identity_write_refuses_a_name_planted_at_its_temporary_file(tmp_path,
                                                                          monkeypatch):
    # The temporary name is random; to plant something there the test has to know it.
    import agent.files

    target = victim(tmp_path)
    store = NodeIdentityStore(str(tmp_path))
    store.write(str(uuid.uuid4()))
    before = Path(store.path).read_text(encoding="utf-8")
    monkeypatch.setattr(agent.files.random_names, "token_hex", lambda _n: "f" * 16)
    (tmp_path / f".compute_id.{'f' * 16}.tmp").symlink_to(target)
    with pytest.raises(StartupError, match=f"^{store.path}: cannot write the node identity: "
                                           "File exists$"):
        store.write(str(uuid.uuid4()))
    assert target.read_text(encoding="utf-8") == VICTIM_TEXT
    assert Path(store.path).read_text(encoding="utf-8") == before


def test_log_file_that_is_a_symlink_is_refused_not_followed(tmp_path):
    target = victim(tmp_path)
    log = tmp_path / "agent.log"
    log.symlink_to(target)
    config = write_config(tmp_path, log_file=log, compute_driver="fake")
    result = run_agent(tmp_path, config, "--once")
    assert result.returncode == 2
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1)
                if text.startswith("log_file"))
    assert result.stderr == (f"agent: error: {config}:{line}: [DEFAULT] log_file = '{log}': "
                             "cannot open it for appending: a symbolic link, not followed\n")
    assert target.read_text(encoding="utf-8") == VICTIM_TEXT


def test_state_directory_writable_by_every_user_stops_start_up(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    config = write_config(tmp_path, compute_driver="fake")
    result = run_agent(tmp_path, config, "--once")
    assert result.returncode == 1
    assert (f"{state}: the state directory is writable by every user (mode 0777), so its node "
            f"identity cannot be trusted; run 'chmod o-w {state}'") in result.stderr
    assert not (state / "compute_id").exists()


def test_fleet_state_directories_and_report_under_umask_000(tmp_path):
    report = tmp_path / "report.json"
    config = write_config(tmp_path, database_url=f"sqlite:///{tmp_path}/fleet.sqlite")
    result = run_agent(tmp_path, config, "fleet", "--count", "2", "--duration", "1",
                       "--ramp", "0.2", "--report", str(report), "--keep")
    assert result.returncode == 0, result.stderr
    fleet = tmp_path / "state" / "fleet"
    directories = [tmp_path / "state", fleet, *fleet.iterdir()]
    assert len(directories) == 4
    assert {str(d): mode(d) for d in directories} == {str(d): 0o750 for d in directories}
    files = [report, tmp_path / "fleet.sqlite", *fleet.glob("*/compute_id")]
    assert len(files) == 4
    assert {str(f): mode(f) for f in files} == {str(f): 0o640 for f in files}
