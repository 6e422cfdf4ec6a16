"""The read-only database a dry run reads through: reads work, every kind of write is refused
before it reaches the server, the server refuses one that bypasses that check, and opening it
creates nothing."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import delete, insert, select, text, update

from agent.db.engine import make_database
from agent.db.models import Service
from agent.db.read_only import ReadOnlyViolation, is_read
from agent.errors import DatabaseError
from agent.registry import load_service, register_service


@pytest.fixture
def read_only(any_db_url):
    db = make_database(any_db_url, read_only=True)
    yield db
    db.dispose()


def services(url):
    db = make_database(url)
    try:
        with db.engine.connect() as conn:
            return conn.execute(select(Service.host, Service.disabled, Service.report_count)
                                .order_by(Service.id)).all()
    finally:
        db.dispose()


def test_reads_see_what_a_writer_committed(any_db, read_only):
    register_service(any_db, "ro-1", starting=False)
    record = load_service(read_only, "ro-1")
    assert record is not None and record.host == "ro-1" and not record.disabled


@pytest.mark.parametrize("write", [
    lambda: insert(Service).values(host="ro-2", binary="b", topic="t", report_count=0,
                                   disabled=False, forced_down=False, deleted=0),
    lambda: update(Service).values(report_count=Service.report_count + 1),
    lambda: delete(Service),
    lambda: text("CREATE TABLE intruder (id INTEGER)"),
    lambda: text("DROP TABLE services"),
], ids=["insert", "update", "delete", "create", "drop"])
def test_every_write_is_refused_naming_the_database_and_changes_nothing(any_db, any_db_url,
                                                                        read_only, write):
    register_service(any_db, "ro-1", starting=False)
    before = services(any_db_url)
    with pytest.raises(ReadOnlyViolation) as caught:
        with read_only.engine.begin() as conn:
            conn.execute(write())
    assert str(caught.value).startswith(f"database {read_only.url} is open read-only: "
                                        "refused to run ")
    with pytest.raises(ReadOnlyViolation):  # the session API goes through the same check
        register_service(read_only, "ro-3")
    assert services(any_db_url) == before


def test_the_server_refuses_a_write_that_bypasses_the_check(any_db, any_db_url, read_only):
    register_service(any_db, "ro-1", starting=False)
    raw = read_only.engine.raw_connection()  # a DBAPI connection: no statement check
    try:
        cursor = raw.cursor()
        with pytest.raises(Exception) as caught:
            cursor.execute("UPDATE services SET report_count = 99")
            raw.commit()
        assert "read" in str(caught.value).lower()  # 'readonly' / 'read-only' / 'READ ONLY'
    finally:
        raw.rollback()
        raw.close()
    assert services(any_db_url) == [("ro-1", False, 0)]


def test_missing_sqlite_file_is_an_error_and_nothing_is_created(tmp_path):
    target = tmp_path / "state" / "agent.sqlite"
    with pytest.raises(DatabaseError, match=f"no such file {target} \\(opened read-only: "
                                            "nothing is created; 'agent db sync', or a start "
                                            "without --dry-run, creates it\\)"):
        make_database(f"sqlite:///{target}", read_only=True)
    assert os.listdir(tmp_path) == []


def test_sqlite_file_and_directory_are_left_as_they_were(sqlite_url, tmp_path):
    path = sqlite_url.removeprefix("sqlite:///")
    listing, content = sorted(os.listdir(tmp_path)), open(path, "rb").read()
    db = make_database(sqlite_url, read_only=True)
    try:
        assert load_service(db, "nobody") is None
    finally:
        db.dispose()
    assert sorted(os.listdir(tmp_path)) == listing
    assert open(path, "rb").read() == content


@pytest.mark.parametrize("statement, reads", [
    ("SELECT 1", True), ("  (SELECT 1) UNION (SELECT 2)", True), ("WITH x AS (SELECT 1) "
                                                                   "SELECT * FROM x", True),
    ("SHOW TABLES", True), ("PRAGMA table_info(services)", True),
    ("SET SESSION TRANSACTION READ ONLY", True), ("select 1", True),
    ("PRAGMA journal_mode=WAL", False), ("SET GLOBAL read_only = 0", False),
    ("INSERT INTO t VALUES (1)", False), ("update t set x = 1", False), ("DELETE FROM t", False),
    ("REPLACE INTO t VALUES (1)", False), ("TRUNCATE t", False), ("ALTER TABLE t ADD y INT",
                                                                   False),
    ("", False), ("VACUUM", False),
])
def test_is_read(statement, reads):
    assert is_read(statement) is reads
