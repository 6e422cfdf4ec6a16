"""Database.bound_to, the seam of the `db` fixture, on every backend: the code's commits land in
savepoints of the test's transaction, its rollbacks return to them, and rolling the outer
transaction back leaves the database as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from agent.db.models import Service
from tests.conftest import begin_outer_transaction


def hosts(db) -> list[str]:
    with db.connect() as conn:
        return sorted(conn.scalars(select(Service.host).where(Service.deleted == 0)))


def add(session_or_conn, host: str) -> None:
    session_or_conn.execute(insert(Service).values(host=host, binary="nova-compute",
                                                   topic="compute"))


def test_commits_stay_inside_the_outer_transaction_and_its_rollback_undoes_them(any_db):
    conn = any_db.engine.connect()
    outer = begin_outer_transaction(conn)
    try:
        bound = any_db.bound_to(conn)
        with bound.sessions.begin() as session:
            add(session, "committed")
        with pytest.raises(RuntimeError):
            with bound.sessions.begin() as session:
                add(session, "rolled-back")
                raise RuntimeError("the request fails")
        with bound.single_statement() as statement:
            add(statement, "single")
        with bound.begin() as transaction:
            add(transaction, "begun")
        with bound.sessions() as session:
            add(session, "session-commit")
            session.commit()

        assert hosts(bound) == ["begun", "committed", "session-commit", "single"]
    finally:
        outer.rollback()
        conn.close()
    assert hosts(any_db) == []


def test_a_failed_statement_rolls_back_to_its_savepoint_only(any_db):
    """A duplicate key fails its statement (on PostgreSQL it aborts the transaction it runs
    in): the session's rollback returns to its savepoint and the bound connection goes on."""
    conn = any_db.engine.connect()
    outer = begin_outer_transaction(conn)
    try:
        bound = any_db.bound_to(conn)
        with bound.sessions.begin() as session:
            session.add(Service(uuid="u-1", host="first", binary="nova-compute"))
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            with bound.sessions.begin() as session:
                session.add(Service(uuid="u-1", host="second", binary="nova-compute"))
        with bound.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Service)) == 1
        assert hosts(bound) == ["first"]
    finally:
        outer.rollback()
        conn.close()
    assert hosts(any_db) == []
