"""The heartbeat against real databases: one UPDATE per beat, the database clock, real faults
(row deleted, PostgreSQL server stopped and started again) and the beating thread."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3

import pytest
from sqlalchemy import event, select, text

from agent.cli import main
from agent.control.services import delete_service
from agent.db import migrate
from agent.db.engine import make_database
from agent.db.models import Service
from agent.db.service_queries import list_services
from agent.heartbeat import Heartbeat, host_utcnow
from agent.log import RequestIdFilter
from agent.registry import COMPUTE_BINARY, finish_starting, register_service
from tests.agent_process import DEADLINE, wait_for
from tests.functional.compute_helpers import in_transaction

def service_row(db, service_id: int) -> Service | None:
    with db.sessions() as session:
        return session.get(Service, service_id)


def heartbeat_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agent.heartbeat" and r.levelno == level]


def test_each_beat_is_exactly_one_update_statement(any_db):
    record = register_service(any_db, "cn1")
    heartbeat = Heartbeat(any_db, record.id, 10)
    with any_db.engine.connect() as conn:  # a pooled connection, dialect initialised
        conn.execute(text("SELECT 1"))
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(any_db.engine, "before_cursor_execute", count)
    try:
        results = [heartbeat.beat() for _ in range(3)]
    finally:
        event.remove(any_db.engine, "before_cursor_execute", count)

    assert results == [True, True, True]
    assert len(statements) == 3
    assert all(s.lstrip().upper().startswith("UPDATE SERVICES") for s in statements)
    row = service_row(any_db, record.id)
    assert row.report_count == 3 and heartbeat.beats_ok == 3
    # The beat does not touch the enabled/disabled state.
    assert row.disabled_reason == record.disabled_reason


@pytest.mark.parametrize("skew_hours", [1, -1], ids=["host-hour-ahead", "host-hour-behind"])
def test_last_seen_up_comes_from_the_database_clock(any_db, any_db_url, capsys, skew_hours):
    skew = dt.timedelta(hours=skew_hours)
    record = register_service(any_db, "skewed")
    finish_starting(any_db, record.id)
    heartbeat = Heartbeat(any_db, record.id, 10, clock=lambda: host_utcnow() + skew)

    assert heartbeat.beat() is True
    with any_db.sessions() as session:
        db_now, [row] = list_services(session, host="skewed")
    assert abs((db_now - row.last_seen_up).total_seconds()) < 5
    measured = (row.last_seen_host_time - row.last_seen_up).total_seconds()
    assert measured == pytest.approx(skew.total_seconds(), abs=5)

    assert main(["services", "list", "--host", "skewed", "--format", "json",
                 "--db", any_db_url]) == 0
    out, err = capsys.readouterr()
    [listed] = json.loads(out)["services"]
    assert listed["state"] == "up" and listed["down_reason"] is None
    if any_db_url.startswith("sqlite"):
        # No database server: a real process stamps both times with its own clock, so the
        # list does not claim an offset it cannot measure.
        assert listed["clock_offset_seconds"] is None and err == ""
        return
    assert listed["clock_offset_seconds"] == pytest.approx(3600 * skew_hours, abs=5)
    assert ("ahead of" if skew_hours > 0 else "behind") in err and "skewed" in err


def test_host_clock_aware_datetimes_are_stored_as_utc(sqlite_rolled_back_db):
    record = register_service(sqlite_rolled_back_db, "tz")
    plus_two = dt.timezone(dt.timedelta(hours=2))
    heartbeat = Heartbeat(sqlite_rolled_back_db, record.id, 10,
                          clock=lambda: dt.datetime.now(plus_two))
    assert heartbeat.beat() is True
    row = service_row(sqlite_rolled_back_db, record.id)
    assert abs((row.last_seen_host_time - row.last_seen_up).total_seconds()) < 5


def test_deleted_row_is_reported_once_and_not_recreated(db, caplog):
    caplog.set_level(logging.INFO, logger="agent.heartbeat")
    record = register_service(db, "gone-host")
    heartbeat = Heartbeat(db, record.id, 10)
    assert heartbeat.beat() is True
    in_transaction(db, delete_service, "gone-host", COMPUTE_BINARY)

    results = [heartbeat.beat() for _ in range(4)]

    assert results == [False] * 4
    [error] = heartbeat_records(caplog, logging.ERROR)
    message = error.getMessage()
    assert "gone-host" in message and COMPUTE_BINARY in message
    assert "restart the agent" in message
    assert heartbeat_records(caplog, logging.WARNING) == []
    assert not any("recovered" in r.getMessage() for r in caplog.records)
    assert heartbeat.last_error is not None and "gone" in heartbeat.last_error
    with db.sessions() as session:
        rows = session.scalars(select(Service).where(Service.host == "gone-host")).all()
    assert [(r.id, r.deleted != 0) for r in rows] == [(record.id, True)]
    assert rows[0].report_count == 1


def test_each_beat_logs_under_a_new_request_id(sqlite_rolled_back_db, caplog):
    caplog.set_level(logging.DEBUG, logger="agent.heartbeat")
    caplog.handler.addFilter(RequestIdFilter())
    record = register_service(sqlite_rolled_back_db, "cn1")
    heartbeat = Heartbeat(sqlite_rolled_back_db, record.id, 10)
    heartbeat.beat()
    heartbeat.beat()
    ids = [r.request_id for r in heartbeat_records(caplog, logging.DEBUG)]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(i.startswith("req-") for i in ids)


def test_database_outage_logged_once_and_recovery_logged_once(throwaway_postgresql, caplog):
    caplog.set_level(logging.INFO, logger="agent.heartbeat")
    db = make_database(throwaway_postgresql.url, connect_timeout=2)
    try:
        migrate.upgrade(db)
        record = register_service(db, "outage-host")
        heartbeat = Heartbeat(db, record.id, 1)
        assert heartbeat.beat() is True

        throwaway_postgresql.stop()
        failed = [heartbeat.beat() for _ in range(3)]
        assert failed == [False, False, False]
        [warning] = heartbeat_records(caplog, logging.WARNING)
        assert "cannot reach the database" in warning.getMessage()
        assert heartbeat_records(caplog, logging.ERROR) == []
        assert heartbeat.last_error is not None

        throwaway_postgresql.start()
        assert heartbeat.beat() is True
        assert heartbeat.beat() is True
        recovered = [r for r in heartbeat_records(caplog, logging.INFO)
                     if "recovered" in r.getMessage()]
        assert len(recovered) == 1
        assert "after 3 failed beats" in recovered[0].getMessage()
        assert len(heartbeat_records(caplog, logging.WARNING)) == 1
        assert heartbeat.last_error is None
        assert service_row(db, record.id).report_count == 3
    finally:
        db.dispose()


def test_thread_stays_healthy_through_a_database_outage(throwaway_postgresql):
    db = make_database(throwaway_postgresql.url, connect_timeout=2)
    migrate.upgrade(db)
    record = register_service(db, "outage-host")
    heartbeat = Heartbeat(db, record.id, 0.2)
    heartbeat.start()
    try:
        assert wait_for(lambda: heartbeat.beats_ok >= 1), "no first beat"
        throwaway_postgresql.stop()
        failures = heartbeat.beats_failed
        assert wait_for(lambda: heartbeat.beats_failed >= failures + 3), "no three failed beats"
        assert heartbeat.is_healthy()
        throwaway_postgresql.start()
        ok = heartbeat.beats_ok
        assert wait_for(lambda: heartbeat.beats_ok > ok), "no beat after the restart"
        assert heartbeat.is_healthy() and heartbeat.last_error is None
    finally:
        heartbeat.stop()
        db.dispose()
    assert not heartbeat.is_healthy()


def test_thread_beats_at_once_and_stops_on_request(sqlite_db):
    record = register_service(sqlite_db, "cn1")
    # An interval far longer than the test: stop() must interrupt the wait, not sit it out.
    heartbeat = Heartbeat(sqlite_db, record.id, 3600)
    assert not heartbeat.is_healthy()
    heartbeat.start()
    assert wait_for(lambda: heartbeat.beats_ok == 1), "no first beat"
    assert heartbeat.is_healthy()

    heartbeat.stop(timeout=DEADLINE)

    assert not heartbeat.is_running
    assert not heartbeat.is_healthy()
    assert service_row(sqlite_db, record.id).report_count == 1


def test_thread_waits_for_initial_delay_then_keeps_beating(sqlite_db):
    record = register_service(sqlite_db, "cn1")
    heartbeat = Heartbeat(sqlite_db, record.id, 0.05, initial_delay=3600)
    heartbeat.start()
    try:
        assert heartbeat.is_healthy()  # waiting for its first beat is not a stuck thread
        assert heartbeat.beats_ok == 0
    finally:
        heartbeat.stop(timeout=DEADLINE)
    assert service_row(sqlite_db, record.id).report_count == 0

    heartbeat = Heartbeat(sqlite_db, record.id, 0.05)
    heartbeat.start()
    try:
        assert wait_for(lambda: heartbeat.beats_ok >= 3), "no three beats"
    finally:
        heartbeat.stop(timeout=DEADLINE)
    assert service_row(sqlite_db, record.id).report_count == heartbeat.beats_ok


def test_thread_stuck_in_a_beat_is_not_healthy(sqlite_url, sqlite_db):
    """A real stuck beat: another process holds SQLite's write lock, so the beat's UPDATE
    waits (busy timeout). The thread is alive but not beating: unhealthy until released."""
    record = register_service(sqlite_db, "cn1")
    heartbeat = Heartbeat(sqlite_db, record.id, 0.1)
    heartbeat.start()
    locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        assert wait_for(lambda: heartbeat.beats_ok >= 1), "no first beat"
        assert heartbeat.is_healthy()
        locker.execute("BEGIN EXCLUSIVE")
        assert wait_for(lambda: not heartbeat.is_healthy()), "stuck beat not noticed"
        assert heartbeat.is_running
        locker.execute("ROLLBACK")
        ok = heartbeat.beats_ok
        assert wait_for(lambda: heartbeat.beats_ok > ok and heartbeat.is_healthy()), (
            "beats did not resume")
    finally:
        locker.close()
        heartbeat.stop(timeout=DEADLINE)


def test_database_password_never_logged(throwaway_postgresql, caplog):
    caplog.set_level(logging.DEBUG, logger="agent.heartbeat")
    url = throwaway_postgresql.url.replace("postgres@", "postgres:s3cret-pw@")
    db = make_database(url, connect_timeout=2)  # the server trusts local users: unused
    try:
        migrate.upgrade(db)
        record = register_service(db, "cn1")
        heartbeat = Heartbeat(db, record.id, 1)
        throwaway_postgresql.stop()
        assert heartbeat.beat() is False
        throwaway_postgresql.start()
        assert heartbeat.beat() is True
    finally:
        db.dispose()
    [warning] = heartbeat_records(caplog, logging.WARNING)
    assert "postgres:***@127.0.0.1" in warning.getMessage()
    assert "s3cret-pw" not in caplog.text
