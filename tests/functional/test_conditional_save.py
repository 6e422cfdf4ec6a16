"""The conditional save on every backend: each row is written only where it is still as it was
read, the caller learns per row which won, the statement count does not grow with the rows, and
a move committed by another transaction while the save waits for its lock is seen."""

from __future__ import annotations

import threading
import uuid as uuid_lib

import pytest
from sqlalchemy import select, text, update

from agent import vocabulary as s
from agent.db import compute_queries as q
from agent.db.models import Instance, Migration
from tests.agent_process import wait_for
from tests.functional.statement_counter import count_statements

HOST = "cs-host"


def add_instances(db, n: int, **values) -> list[tuple[int, str]]:
    with db.sessions.begin() as session:
        rows = [Instance(uuid=str(uuid_lib.uuid4()), host=HOST, node=HOST, vm_state=s.ACTIVE,
                         task_state=None, power_state=1, deleted=0, **values) for _ in range(n)]
        session.add_all(rows)
        session.flush()
        return [(r.id, r.uuid) for r in rows]


def stop(row: tuple[int, str], **expected) -> q.InstanceUpdate:
    """Save 'stopped, power 4' for a row read as active with no task."""
    read = {"vm_state": s.ACTIVE, "task_state": None}
    read.update(expected)
    return q.InstanceUpdate(row[0], row[1], read, {"vm_state": s.STOPPED, "task_state": None,
                                                   "power_state": 4})


def states_of(db, ids) -> dict[int, tuple]:
    with db.sessions() as session:
        return {r.id: (r.host, r.vm_state, r.task_state, r.power_state, r.deleted != 0)
                for r in session.execute(select(Instance).where(Instance.id.in_(ids)))
                .scalars()}


def test_save_instances_writes_only_rows_still_as_read_and_names_the_others(db):
    plain, moved, busy, deleted, finishing = add_instances(db, 5)
    with db.begin() as conn:
        conn.execute(update(Instance).where(Instance.id == moved[0]).values(host="other"))
        conn.execute(update(Instance).where(Instance.id == busy[0])
                     .values(task_state=s.POWERING_ON))
        conn.execute(update(Instance).where(Instance.id == deleted[0])
                     .values(deleted=Instance.id))
    with db.sessions.begin() as session:
        result = q.save_instances(session, HOST, [
            stop(plain), stop(moved), stop(busy), stop(deleted),
            q.InstanceUpdate(finishing[0], finishing[1], {"vm_state": s.ACTIVE},
                             {"vm_state": s.DELETED}, delete=True)])
    assert result.won == {plain[0], finishing[0]}
    assert {lost.label: lost.describe() for lost in result.lost} == {
        moved[1]: "host is now 'other' (read 'cs-host')",
        busy[1]: "task_state is now 'powering-on' (read None)",
        deleted[1]: f"deleted is now {deleted[0]} (read 0)"}
    after = states_of(db, [r[0] for r in (plain, moved, busy, deleted, finishing)])
    assert after[plain[0]] == (HOST, s.STOPPED, None, 4, False)
    assert after[moved[0]] == ("other", s.ACTIVE, None, 1, False)
    assert after[busy[0]] == (HOST, s.ACTIVE, s.POWERING_ON, 1, False)
    assert after[deleted[0]] == (HOST, s.ACTIVE, None, 1, True)
    assert after[finishing[0]] == (HOST, s.DELETED, None, 1, True)


def test_save_of_a_row_that_does_not_exist_is_lost_as_gone(db):
    with db.sessions.begin() as session:
        result = q.save_instances(session, HOST, [stop((987654, "no-such-uuid"))])
    assert result.won == frozenset()
    assert [(lost.label, lost.describe()) for lost in result.lost] == [
        ("no-such-uuid", "the row is gone")]


def test_save_instance_wins_with_one_statement_and_names_what_changed_when_lost(any_db):
    """The one-row save of an RPC operation: its guarded UPDATE alone when it wins; when the
    row changed, nothing is written and the change is named, as for a batch."""
    plain, moved, gone = add_instances(any_db, 3)
    with any_db.engine.begin() as conn:
        conn.execute(update(Instance).where(Instance.id == moved[0]).values(host="other"))
        conn.execute(update(Instance).where(Instance.id == gone[0]).values(deleted=Instance.id))
    with count_statements(any_db.engine) as counter:
        with any_db.sessions.begin() as session:
            won = q.save_instance(session, HOST, stop(plain))
    assert (won.won, won.lost, counter.statements) == ({plain[0]}, (), 1)
    with any_db.sessions.begin() as session:
        lost = [q.save_instance(session, HOST, stop(row)) for row in (moved, gone)]
    assert [(r.won, [x.describe() for x in r.lost]) for r in lost] == [
        (frozenset(), ["host is now 'other' (read 'cs-host')"]),
        (frozenset(), [f"deleted is now {gone[0]} (read 0)"])]
    after = states_of(any_db, [plain[0], moved[0], gone[0]])
    assert after[plain[0]] == (HOST, s.STOPPED, None, 4, False)
    assert after[moved[0]] == ("other", s.ACTIVE, None, 1, False)
    assert after[gone[0]] == (HOST, s.ACTIVE, None, 1, True)


def test_save_migrations_only_where_status_still_holds(db):
    with db.sessions.begin() as session:
        rows = [Migration(uuid=str(uuid_lib.uuid4()), instance_uuid=str(uuid_lib.uuid4()),
                          source_compute=HOST, dest_compute="dst", migration_type="evacuation",
                          status="done", deleted=0) for _ in range(2)]
        session.add_all(rows)
        session.flush()
        kept, changed = rows[0].id, rows[1].id
    with db.begin() as conn:
        conn.execute(update(Migration).where(Migration.id == changed).values(status="error"))
    with db.sessions.begin() as session:
        result = q.save_migrations(session, [
            q.MigrationUpdate(mid, {"status": "done", "source_compute": HOST}, "completed")
            for mid in (kept, changed)])
    assert result.won == {kept}
    assert [(lost.label, lost.describe()) for lost in result.lost] == [
        (f"migration {changed}", "status is now 'error' (read 'done')")]
    with db.sessions() as session:
        assert dict(session.execute(select(Migration.id, Migration.status)).all()) == {
            kept: "completed", changed: "error"}


def test_save_statement_count_does_not_grow_with_rows(db):
    counts = []
    for n in (3, 300):
        rows = add_instances(db, n)
        with count_statements(db.engine) as counter:
            with db.sessions.begin() as session:
                result = q.save_instances(session, HOST, [stop(r) for r in rows])
        assert len(result.won) == n
        counts.append(counter.statements)
    assert counts[0] == counts[1]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_save_waiting_for_a_moving_transaction_sees_the_move(request, backend):
    """Another transaction (evacuate) has locked and moved a row but not committed: the save
    waits on its lock, then reads the committed move and reports the row lost."""
    from agent.db.engine import make_database
    from tests.conftest import _prepare_url

    request.applymarker(getattr(pytest.mark, backend))
    url = _prepare_url(backend, None, request.getfixturevalue("_server_databases"))
    db = make_database(url)
    try:
        mine, moving = add_instances(db, 2)
        mover = db.engine.connect()
        mover_tx = mover.begin()
        mover.execute(update(Instance).where(Instance.id == moving[0]).values(host="dst"))
        results: list = []

        def save() -> None:
            with db.sessions.begin() as session:
                results.append(q.save_instances(session, HOST, [stop(mine), stop(moving)]))

        saver = threading.Thread(target=save)
        saver.start()
        assert wait_for(lambda: _waiting_for_lock(db, backend), deadline=30)
        assert not results  # still waiting
        mover_tx.commit()
        mover.close()
        saver.join(30)
        assert not saver.is_alive()
        assert results[0].won == {mine[0]}
        assert [lost.label for lost in results[0].lost] == [moving[1]]
        assert states_of(db, [moving[0]])[moving[0]] == ("dst", s.ACTIVE, None, 1, False)
    finally:
        db.dispose()


def _waiting_for_lock(db, backend: str) -> bool:
    """Another connection of this database is inside the save's locking read (it cannot finish
    while the mover holds the row)."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
             "AND state = 'active' AND query LIKE '%FOR UPDATE%' AND pid <> pg_backend_pid()"
             if backend == "postgresql" else
             "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
             "AND info LIKE '%FOR UPDATE%' AND id <> CONNECTION_ID()")
    with db.engine.connect() as conn:
        return conn.execute(text(query)).scalar() > 0
