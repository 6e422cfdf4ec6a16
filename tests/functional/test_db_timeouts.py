"""Every database call has a time limit: a frozen server (SIGSTOP on every PostgreSQL
process) fails a beat within the limit instead of hanging it, logged once when lost and once
when back; a statement that outlives statement_timeout fails on every server backend."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from agent.db import migrate
from agent.db.engine import make_database
from agent.heartbeat import Heartbeat
from agent.registry import register_service
from tests.agent_process import bounded
from tests.conftest import server_url

# Far beyond the limits under test (2 s statement_timeout, 2 s connect_timeout), far below
# "for ever": a call still running after this is hung.
HUNG_AFTER_SECONDS = 45


def heartbeat_lines(caplog, level):
    return [r.getMessage() for r in caplog.records
            if r.name == "agent.heartbeat" and r.levelno == level]


@pytest.mark.postgresql
def test_frozen_postgresql_fails_beats_within_the_limit_then_recovers(throwaway_postgresql,
                                                                     caplog):
    caplog.set_level(logging.INFO, logger="agent.heartbeat")
    server = throwaway_postgresql
    db = make_database(server.url, connect_timeout=2, statement_timeout=2)
    try:
        migrate.upgrade(db)
        record = register_service(db, "frozen-host")
        heartbeat = Heartbeat(db, record.id, 1)
        assert heartbeat.beat() is True

        server.freeze()
        try:
            failed = [bounded(heartbeat.beat, HUNG_AFTER_SECONDS) for _ in range(3)]
        finally:
            server.thaw()
        assert failed == [False, False, False]
        [lost] = heartbeat_lines(caplog, logging.WARNING)
        assert "cannot reach the database" in lost
        assert heartbeat_lines(caplog, logging.ERROR) == []

        assert bounded(heartbeat.beat, HUNG_AFTER_SECONDS) is True
        assert bounded(heartbeat.beat, HUNG_AFTER_SECONDS) is True
        recovered = [line for line in heartbeat_lines(caplog, logging.INFO)
                     if "recovered" in line]
        assert len(recovered) == 1 and "after 3 failed beats" in recovered[0]
        assert len(heartbeat_lines(caplog, logging.WARNING)) == 1
    finally:
        db.dispose()


@pytest.mark.postgresql
def test_frozen_postgresql_reason_names_the_limit(throwaway_postgresql):
    server = throwaway_postgresql
    db = make_database(server.url, connect_timeout=2, statement_timeout=2)
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            server.freeze()
            try:
                with pytest.raises(OperationalError) as err:
                    bounded(lambda: conn.execute(text("SELECT 1")), HUNG_AFTER_SECONDS)
            finally:
                server.thaw()
        assert "no answer from the PostgreSQL server within 4 s" in str(err.value)
        with db.engine.connect() as conn:  # the pool dropped the dead connection
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


@pytest.mark.parametrize("backend,sleep,message", [
    pytest.param("postgresql", "SELECT pg_sleep(30)", "statement timeout", id="postgresql",
                 marks=pytest.mark.postgresql),
    pytest.param("mysql", "SELECT SLEEP(30)", "Lost connection", id="mysql",
                 marks=pytest.mark.mysql),
])
def test_statement_longer_than_statement_timeout_fails(backend, sleep, message):
    db = make_database(server_url(backend), statement_timeout=1)
    try:
        with db.engine.connect() as conn:
            with pytest.raises(OperationalError, match=message):
                bounded(lambda: conn.execute(text(sleep)), HUNG_AFTER_SECONDS)
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


@pytest.mark.postgresql
def test_server_enforces_the_configured_limit_and_operator_commands_get_an_hour(tmp_path):
    from agent.config import RawValue, load_config
    from agent.db.engine import OPERATOR_STATEMENT_TIMEOUT_SECONDS, database_from_conf

    conf = load_config(None, {("database", "connection"): RawValue(server_url("postgresql"),
                                                                   "test"),
                              ("DEFAULT", "state_path"): RawValue(str(tmp_path), "test")})
    for timeout, shown in ((None, "10s"), (OPERATOR_STATEMENT_TIMEOUT_SECONDS, "1h")):
        db = database_from_conf(conf, statement_timeout=timeout)
        try:
            with db.engine.connect() as conn:
                assert conn.execute(text("SHOW statement_timeout")).scalar() == shown
        finally:
            db.dispose()
