"""The one way instance and migration rows are written: a conditional save that reports, per
row, whether it won.

A writer reads rows, decides, and saves `RowSave(id, expected, values)`: write `values` to the
row only where every `expected` column still holds the value that was read (for instances at
least `host`; for migrations their `status`). `save_rows` then

1. reads the rows' current values in one locking SELECT (`FOR UPDATE`, in id order, the order
   `agent evacuate` locks them in; on SQLite the write lock is taken first with
   `BEGIN IMMEDIATE`, so nothing can commit between the read and the write),
2. decides per row, in Python (`decide_saves`, pure): won, or lost with the column that changed,
3. writes the winners with one executemany UPDATE per shape of change, still guarded by the
   expected values.

So the caller learns per row whether it won on SQLite, PostgreSQL and MariaDB alike, without
trusting an executemany's rowcount, and a save costs two or three statements whatever the number
of rows. The rows stay locked until the caller's transaction ends.

`save_row` saves one row (an RPC operation's outcome, its task_state before the driver works)
with the guarded UPDATE alone: a single UPDATE's rowcount is exact on all three databases
(MariaDB's counts the rows matched: SQLAlchemy connects with FOUND_ROWS), so one statement
decides and writes, and it holds the row's lock (SQLite's write lock) to the end of the
transaction. Only when it matched nothing does the locking read above run, to report which
column changed (or to write the row after all, if it holds its values again by then). The
UPDATE statements are built once per shape of change and kept.

On a read-only database (a dry run: agent.db.read_only) the rows are read without a lock, the
same decision is made and reported, the winners are logged as what would be written (each at
DEBUG, one INFO line for the batch), and nothing is written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from agent.db.models import utcnow
from agent.db.read_only import refuses_writes

LOG = logging.getLogger(__name__)

# Lost races listed one line each up to this many; beyond, one summary line (each at DEBUG).
LOST_LINES = 20


@dataclass(frozen=True)
class RowSave:
    """Write `values` (column -> value, or a SQL expression shared by every row of a batch) to
    row `id` where each `expected` column still equals what was read (None compares as NULL).
    `label` names the row in logs (an instance uuid)."""

    id: int
    expected: Mapping[str, object]
    values: Mapping[str, object]
    label: str = ""


@dataclass(frozen=True)
class LostSave:
    """A row that was not written: `column` no longer holds `expected` but `found` (`gone`:
    the row does not exist any more)."""

    id: int
    label: str
    column: str | None
    expected: object = None
    found: object = None
    gone: bool = False

    def describe(self) -> str:
        if self.gone:
            return "the row is gone"
        return f"{self.column} is now {self.found!r} (read {self.expected!r})"


@dataclass(frozen=True)
class SaveResult:
    won: frozenset[int] = frozenset()
    lost: tuple[LostSave, ...] = field(default_factory=tuple)

    def __or__(self, other: "SaveResult") -> "SaveResult":
        return SaveResult(self.won | other.won, self.lost + other.lost)


def decide_saves(saves: Sequence[RowSave], current: Mapping[int, Mapping[str, object]]
                 ) -> SaveResult:
    """Which saves win against the rows as they are now (`current`: id -> column -> value)."""
    won, lost = set(), []
    for save in saves:
        row = current.get(save.id)
        if row is None:
            lost.append(LostSave(save.id, save.label, None, gone=True))
            continue
        changed = next((c for c in sorted(save.expected) if row[c] != save.expected[c]), None)
        if changed is None:
            won.add(save.id)
        else:
            lost.append(LostSave(save.id, save.label, changed, save.expected[changed],
                                 row[changed]))
    return SaveResult(frozenset(won), tuple(lost))


def save_rows(session: Session, table: Table, saves: Sequence[RowSave]) -> SaveResult:
    """Save each row only where its expected values still hold (see the module docstring);
    returns which won and which lost. Nothing is written for an empty list. Raises the
    database's error (the caller's transaction then rolls back)."""
    if not saves:
        return SaveResult()
    if len({s.id for s in saves}) != len(saves):
        raise ValueError(f"save_rows: one row saved twice in one call on {table.name}")
    columns = sorted({c for s in saves for c in s.expected})
    ids = [s.id for s in saves]
    if refuses_writes(session):
        result = decide_saves(saves, _read_rows(session, table, ids, columns))
        for save in saves:
            if save.id in result.won:
                LOG.debug("read-only database: %s would be saved with %s",
                          save.label or f"{table.name} row {save.id}", dict(save.values))
        LOG.info("read-only database (dry run): %d %s row%s would be saved; nothing written",
                 len(result.won), table.name, "" if len(result.won) == 1 else "s")
        return result
    current = lock_rows(session, table, ids, columns)
    result = decide_saves(saves, current)
    batches: dict[tuple, list[RowSave]] = defaultdict(list)
    for save in saves:
        if save.id in result.won:
            batches[_shape(save)].append(save)
    for members in batches.values():
        _write(session, table, members)
    return result


def save_row(session: Session, table: Table, save: RowSave) -> SaveResult:
    """`save_rows` of one row in one statement when it wins: the guarded UPDATE, whose rowcount
    says whether it matched; only when it did not, the locking read and decision of
    `save_rows` (which also writes the row if it holds its expected values again by then)."""
    if not refuses_writes(session):
        stmt, params = _update_of(table, [save])
        if session.execute(stmt, params[0]).rowcount == 1:
            return SaveResult(frozenset((save.id,)))
    return save_rows(session, table, [save])


def _select_rows(table: Table, ids: Iterable[int], columns: Sequence[str]):
    return (select(table.c.id, *[table.c[c] for c in columns])
            .where(table.c.id.in_(list(ids))).order_by(table.c.id))


def _read_rows(session: Session, table: Table, ids: Iterable[int], columns: Sequence[str]
               ) -> dict[int, dict[str, object]]:
    """`lock_rows` without the lock (a read-only transaction may not take one)."""
    return {row[0]: dict(zip(columns, row[1:]))
            for row in session.execute(_select_rows(table, ids, columns))}


def lock_rows(session: Session, table: Table, ids: Iterable[int], columns: Sequence[str]
              ) -> dict[int, dict[str, object]]:
    """One SELECT of `columns` of the rows `ids`, locking them until the transaction ends
    (id -> column -> value; missing rows are absent)."""
    stmt = _select_rows(table, ids, columns)
    if session.get_bind().dialect.name == "sqlite":
        _sqlite_write_lock(session)
    else:
        stmt = stmt.with_for_update()
    return {row[0]: dict(zip(columns, row[1:])) for row in session.execute(stmt)}


def _sqlite_write_lock(session: Session) -> None:
    """Hold SQLite's write lock from here to the end of the transaction. pysqlite opens a
    transaction only before a data-changing statement, so a transaction that has not written
    yet is not open: open it with BEGIN IMMEDIATE (waits out the busy timeout)."""
    conn = session.connection()
    if not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _shape(save: RowSave) -> tuple:
    # Rows with the same guarded columns and the same written columns (and the same shared
    # expressions) go in one executemany.
    return (tuple(sorted(save.expected)),
            tuple(sorted((c, id(v) if isinstance(v, ClauseElement) else None)
                         for c, v in save.values.items())))


# (table, guarded columns, written columns with the identity of shared expressions) -> the
# guarded UPDATE and those expressions (kept alive with it, so their identities cannot be reused
# while it is cached); a writer has a handful of shapes, so this stays small.
_UPDATES: dict[tuple, tuple[object, tuple]] = {}
_MAX_SHAPES = 256


def _update_of(table: Table, members: Sequence[RowSave]) -> tuple[object, list[dict]]:
    """The guarded UPDATE for rows of one shape (built once per shape) and its parameters."""
    first = members[0]
    key = (table.name, _shape(first))
    shared = tuple(v for _, v in sorted(first.values.items())
                   if isinstance(v, ClauseElement))
    stmt, kept = _UPDATES.get(key, (None, ()))
    if stmt is None or any(a is not b for a, b in zip(kept, shared)):
        guard = [table.c.id == bindparam("w_id")]
        guard += [table.c[c].is_not_distinct_from(bindparam("e_" + c))
                  for c in sorted(first.expected)]
        values: dict[str, object] = {"updated_at": utcnow()}
        for column, value in first.values.items():
            values[column] = (value if isinstance(value, ClauseElement)
                              else bindparam("v_" + column))
        stmt = update(table).where(*guard).values(**values)
        if len(_UPDATES) >= _MAX_SHAPES:
            _UPDATES.clear()
        _UPDATES[key] = (stmt, shared)
    params = [{"w_id": s.id, **{"e_" + c: v for c, v in s.expected.items()},
               **{"v_" + c: v for c, v in s.values.items() if not isinstance(v, ClauseElement)}}
              for s in members]
    return stmt, params


def _write(session: Session, table: Table, members: Sequence[RowSave]) -> None:
    stmt, params = _update_of(table, members)
    session.execute(stmt, params)


def log_lost(log: logging.Logger, lost: Sequence[LostSave], writer: str, host: str) -> None:
    """Report saves that lost their race: one WARNING per row up to LOST_LINES rows; beyond,
    one WARNING with the count and the first few, each row at DEBUG."""
    if not lost:
        return
    if len(lost) <= LOST_LINES:
        for item in lost:
            log.warning("%s on host %s lost a race for %s: %s; not saved", writer, host,
                        item.label or f"row {item.id}", item.describe())
        return
    log.warning("%s on host %s lost a race for %d rows (changed meanwhile, e.g. moved to "
                "another host); not saved: %s ...", writer, host, len(lost),
                ", ".join(f"{i.label or i.id} ({i.describe()})" for i in lost[:5]))
    for item in lost:
        log.debug("%s on host %s lost a race for %s: %s; not saved", writer, host,
                  item.label or f"row {item.id}", item.describe())
