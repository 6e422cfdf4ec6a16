"""The engine factory: URL masking, refusal of bad URLs, SQLite's WAL and busy timeout."""

from __future__ import annotations

import contextlib
import sqlite3
import threading

import pytest
from sqlalchemy import text

from agent.db.engine import STATEMENT_TIMEOUT_SECONDS, make_database
from agent.errors import ConfigError, DatabaseError

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize("url, expected", [
    (f"postgresql+psycopg://nova:{SECRET}@db.example:5432/nova",
     "postgresql+psycopg://nova:***@db.example:5432/nova"),
    (f"mysql+pymysql://root:{SECRET}@127.0.0.1/agent", "mysql+pymysql://root:***@127.0.0.1/agent"),
    ("postgresql+psycopg://nova@db.example/nova", "postgresql+psycopg://nova@db.example/nova"),
    (f"postgresql+psycopg://nova@db.example/nova?password={SECRET}&sslmode=require",
     "postgresql+psycopg://nova@db.example/nova?password=***&sslmode=require"),
    (f"mysql+pymysql://root:p%40ss@127.0.0.1/agent?passwd={SECRET}",
     "mysql+pymysql://root:***@127.0.0.1/agent?passwd=***"),
], ids=["postgresql", "mysql", "no-password", "query-password", "encoded-at-and-passwd"])
def test_database_url_masks_password(url, expected):
    db = make_database(url)
    try:
        assert db.url == expected
    finally:
        db.dispose()


@pytest.mark.parametrize("url", [
    f"postgresql+psycopg:/nova:{SECRET}@db.example/nova",
    f"nova:{SECRET}@db.example/nova",
    "not a url",
    f"postgresql+psycopg://nova:{SECRET}@x@db.example/nova",
], ids=["one-slash", "no-scheme", "no-credentials", "two-at"])
def test_bad_url_is_config_error_not_showing_it(url):
    with pytest.raises(ConfigError) as caught:
        make_database(url)
    message = str(caught.value)
    assert message.startswith("[database] connection (value not shown): not a URL whose "
                              "password can be kept out of logs: ")
    assert SECRET not in message and "nova" not in message
    assert caught.value.exit_code == 2


def test_unsupported_backend_is_config_error_naming_it_masked():
    with pytest.raises(ConfigError) as caught:
        make_database(f"oracle://scott:{SECRET}@db.example/orcl")
    message = str(caught.value)
    assert "'oracle://scott:***@db.example/orcl'" in message
    assert "unsupported backend 'oracle'" in message
    assert SECRET not in message


def test_sqlite_gets_wal_and_busy_timeout(tmp_path):
    db = make_database(f"sqlite:///{tmp_path}/agent.sqlite")
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert (conn.execute(text("PRAGMA busy_timeout")).scalar()
                    == STATEMENT_TIMEOUT_SECONDS * 1000)
    finally:
        db.dispose()
    # WAL is a property of the file: any later reader (sqlite3 CLI, another agent) sees it.
    with contextlib.closing(sqlite3.connect(tmp_path / "agent.sqlite")) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_creates_missing_state_directory(tmp_path):
    db = make_database(f"sqlite:///{tmp_path}/a/b/agent.sqlite")
    try:
        with db.engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        assert (tmp_path / "a" / "b" / "agent.sqlite").exists()
    finally:
        db.dispose()


def test_sqlite_directory_that_cannot_be_created_is_database_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseError, match=f"database sqlite:///{blocker}/agent.sqlite: cannot "
                                            f"create the directory {blocker}: "):
        make_database(f"sqlite:///{blocker}/agent.sqlite")


def test_first_connection_waits_for_a_writer_to_switch_a_new_file_to_wal(tmp_path):
    # Two agents creating the same new database: while one holds a write lock on the file (not
    # yet in WAL mode), SQLite refuses the other's switch to WAL at once instead of waiting out
    # the busy timeout. The connection must wait for the lock and then switch.
    path = tmp_path / "agent.sqlite"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (a)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    db = make_database(f"sqlite:///{path}")
    releaser = threading.Timer(0.3, writer.execute, args=("COMMIT",))
    releaser.start()
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("SELECT a FROM t")).scalar() == 1  # after the commit
    finally:
        releaser.join()
        writer.close()
        db.dispose()
