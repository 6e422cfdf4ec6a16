"""The embedded database's file: deleted under a running agent, replaced, or damaged."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from sqlalchemy import text

from agent.cli import main
from agent.db import migrate
from agent.db.engine import make_database
from agent.errors import DatabaseError
from agent.heartbeat import Heartbeat
from agent.registry import register_service


@pytest.fixture
def beating(tmp_path):
    path = tmp_path / "state" / "agent.sqlite"
    db = make_database(f"sqlite:///{path}")
    migrate.upgrade(db)
    record = register_service(db, "cn1")
    heartbeat = Heartbeat(db, record.id, 10)
    assert heartbeat.beat() is True
    yield path, db, heartbeat
    db.dispose()


def test_deleted_file_fails_beats_naming_it_and_is_not_recreated(beating, caplog):
    caplog.set_level(logging.INFO, logger="agent.heartbeat")
    path, _db, heartbeat = beating
    backup = path.with_suffix(".backup")
    shutil.copy(path, backup)
    os.unlink(path)

    assert [heartbeat.beat() for _ in range(3)] == [False, False, False]

    assert not path.exists()  # no empty database in its place
    lost = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lost) == 1, lost
    assert [r.exc_info for r in caplog.records if r.levelno >= logging.WARNING] == [None]
    assert f"database file {path} is gone: it was deleted while the agent used it" in lost[0]

    shutil.copy(backup, path)  # the operator restores it
    assert heartbeat.beat() is True
    assert any("recovered" in r.getMessage() for r in caplog.records)


def test_replaced_file_is_reconnected_to(beating, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path, db, heartbeat = beating
    backup = tmp_path / "backup.sqlite"
    with db.engine.connect() as conn:
        conn.execute(text(f"VACUUM INTO '{backup}'"))
    os.replace(backup, path)  # a restore: another file at the same path

    assert heartbeat.beat() is True
    assert heartbeat.beat() is True
    replaced = [r.getMessage() for r in caplog.records if "was replaced" in r.getMessage()]
    assert replaced == [f"database file {path} was replaced (another file is at its path "
                        "now): reconnecting to it"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("content", [b"this is not a database" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4096],
                         ids=["text", "damaged-header"])
def test_corrupt_file_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "agent.sqlite"
    path.write_bytes(content)
    db = make_database(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseError, match=f"database file {path}: .*: it is damaged or "
                                                "not an SQLite database"):
            with db.engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM sqlite_master"))
    finally:
        db.dispose()


def test_services_list_on_a_corrupt_file_names_it(tmp_path, capsys):
    path = tmp_path / "agent.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    status = main(["services", "list", "--db", f"sqlite:///{path}"])
    err = capsys.readouterr().err
    assert status != 0
    assert err.count("\n") == 1 and f"database file {path}" in err
