"""The services table: its one record type, and every read and write of it that the control
plane and the agent's registry make, each on the caller's session (the caller owns the
transaction: one per CLI command, one per API request, one per registry step).

The agent's own changes are conditional UPDATEs whose WHERE clause states the condition; each
says whether it matched, so a change an operator made meanwhile is never overwritten.

Functions return records, counts or booleans; they decide nothing and word nothing for a user.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from agent.db.models import ComputeNode, Instance, Migration, Service, utcnow
from agent.vocabulary import EVACUATION, EVACUATION_DONE, FINISHED_MIGRATION_STATUSES


class ServiceRecord(NamedTuple):
    """One live row of the services table (nova's columns), as every reader sees it: a tuple
    in the order of RECORD_COLUMNS, built from a result row without per-field work (a list of
    10,000 services is read in one statement and judged in one pass)."""

    id: int
    uuid: str
    host: str
    binary: str
    topic: str | None
    report_count: int
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    last_seen_up: dt.datetime | None
    last_seen_host_time: dt.datetime | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    last_seen_by: str | None = None  # the identity of the agent that beat last
    started_at: dt.datetime | None = None  # when that agent claimed the row


_S = Service.__table__
# The table's columns in ServiceRecord's order (Core columns: rows come back as plain tuples,
# no ORM loading), for this module's SELECTs and a caller's own joined SELECT.
RECORD_COLUMNS = tuple(_S.c[name] for name in ServiceRecord._fields)
_COLUMNS = RECORD_COLUMNS
_WIDTH = len(RECORD_COLUMNS)


def service_record(values) -> ServiceRecord:
    """From a result row whose first columns are RECORD_COLUMNS (further columns, such as the
    database's clock, are left out). Booleans come back as bool from every backend (the
    Boolean type converts MariaDB's and SQLite's integers)."""
    return ServiceRecord._make(values[:_WIDTH])


def list_services(session: Session, host: str | None = None, binary: str | None = None
                  ) -> tuple[dt.datetime | None, list[ServiceRecord]]:
    """One SELECT: the live service rows (optionally of one host / binary), by id, and the
    database's current UTC time read in the same statement, so every verdict uses one clock.
    db_now is None when no row matches."""
    stmt = select(*_COLUMNS, utcnow().label("db_now")).where(_S.c.deleted == 0)
    if host is not None:
        stmt = stmt.where(_S.c.host == host)
    if binary is not None:
        stmt = stmt.where(_S.c.binary == binary)
    rows = session.execute(stmt.order_by(_S.c.id)).all()
    db_now = rows[0][-1] if rows else None
    make = ServiceRecord._make
    return db_now, [make(row[:_WIDTH]) for row in rows]


def find_service(session: Session, host: str, binary: str, *,
                 lock: bool = False) -> ServiceRecord | None:
    """One SELECT: the live row of `host` and `binary` (locked FOR UPDATE until the session's
    transaction ends, with `lock`), or None."""
    stmt = select(*_COLUMNS).where(_S.c.host == host, _S.c.binary == binary,
                                   _S.c.deleted == 0)
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).one_or_none()
    return service_record(row) if row is not None else None


def load_service_by_id(session: Session, service_id: int) -> ServiceRecord | None:
    """One SELECT: the live row with this id, or None (absent or soft-deleted)."""
    row = session.execute(select(*_COLUMNS).where(_S.c.id == service_id,
                                                  _S.c.deleted == 0)).one_or_none()
    return service_record(row) if row is not None else None


def load_service_by_uuid(session: Session, uuid: str) -> ServiceRecord | None:
    """One SELECT: the live row with this uuid, or None (absent or soft-deleted)."""
    row = session.execute(select(*_COLUMNS).where(_S.c.uuid == uuid,
                                                  _S.c.deleted == 0)).one_or_none()
    return service_record(row) if row is not None else None


def load_service_and_clock(session: Session, service_id: int
                           ) -> tuple[ServiceRecord, dt.datetime] | None:
    """One SELECT: the live row with this id and the database's current UTC time, or None."""
    row = session.execute(select(*_COLUMNS, utcnow().label("db_now"))
                          .where(_S.c.id == service_id, _S.c.deleted == 0)).one_or_none()
    return (service_record(row), row.db_now) if row is not None else None


def claim_for_agent(session: Session, service_id: int, agent_id: str | None, *,
                    last_seen_by: str | None, report_count: int) -> bool:
    """One UPDATE: stamp the live row as run by `agent_id` from now (last_seen_by,
    started_at, last_seen_up), only where its last_seen_by and report_count are still those
    read. Returns whether it did."""
    return _changed(session, update(_S).where(
        _S.c.id == service_id, _S.c.deleted == 0,
        _S.c.last_seen_by.is_not_distinct_from(last_seen_by),
        _S.c.report_count == report_count)
        .values(last_seen_by=agent_id, started_at=utcnow(), last_seen_up=utcnow()))


def database_now(session: Session) -> dt.datetime:
    """One SELECT: the database server's current UTC time (naive)."""
    return session.scalar(select(utcnow()))


def update_service(session: Session, service_id: int, **values) -> ServiceRecord | None:
    """One UPDATE of the live row's `values` (column=value), then the row as it is now (None:
    no live row with this id)."""
    session.execute(update(_S).where(_S.c.id == service_id, _S.c.deleted == 0)
                    .values(**values))
    return load_service_by_id(session, service_id)


def insert_service(session: Session, *, host: str, binary: str, topic: str, disabled: bool,
                   disabled_reason: str | None, last_seen_by: str | None) -> ServiceRecord:
    """A new live row (report_count 0, started_at now), as inserted: one INSERT ... RETURNING
    where the server has it (SQLite, PostgreSQL, MariaDB), else an INSERT and a SELECT. Raises
    sqlalchemy's IntegrityError when a live row of `host` and `binary` exists (another process
    registered it first)."""
    stmt = insert(_S).values(host=host, binary=binary, topic=topic, report_count=0,
                             disabled=disabled, disabled_reason=disabled_reason,
                             forced_down=False, deleted=0, last_seen_by=last_seen_by,
                             started_at=utcnow())
    if session.get_bind().dialect.insert_returning:
        return service_record(session.execute(stmt.returning(*RECORD_COLUMNS)).one())
    new_id = session.execute(stmt).inserted_primary_key[0]
    return load_service_by_id(session, new_id)


def disable_if(session: Session, service_id: int, reason: str, *,
               or_reason_prefix: str | None = None) -> bool:
    """One UPDATE: disable the live row with `reason` where it is enabled (or, with
    `or_reason_prefix`, disabled with a reason starting with it). Returns whether it did."""
    condition = _S.c.disabled.is_(False)
    if or_reason_prefix is not None:
        condition = condition | _S.c.disabled_reason.startswith(or_reason_prefix,
                                                                 autoescape=True)
    return _changed(session, update(_S).where(_S.c.id == service_id, _S.c.deleted == 0,
                                              condition)
                    .values(disabled=True, disabled_reason=reason))


def replace_reason_if(session: Session, service_id: int, old: str,
                      new: str | None) -> bool:
    """One UPDATE: where the live row is disabled with exactly `old`, set the reason to `new`,
    or enable it when `new` is None. Returns whether it did."""
    values = {"disabled_reason": new} if new is not None else {"disabled": False,
                                                               "disabled_reason": None}
    return _changed(session, update(_S).where(_S.c.id == service_id, _S.c.deleted == 0,
                                              _S.c.disabled.is_(True),
                                              _S.c.disabled_reason == old).values(**values))


def _changed(session: Session, stmt) -> bool:
    return session.execute(stmt).rowcount == 1


def soft_delete_service(session: Session, service_id: int, host: str) -> None:
    """Soft-delete the service row and the live compute_nodes rows of its host (deleted = id,
    deleted_at = now), as nova's service delete does."""
    session.execute(update(_S).where(_S.c.id == service_id)
                    .values(deleted=service_id, deleted_at=utcnow()))
    session.execute(update(ComputeNode)
                    .where(ComputeNode.host == host, ComputeNode.deleted == 0)
                    .values(deleted=ComputeNode.id, deleted_at=utcnow()))


def count_host_instances(session: Session, host: str) -> int:
    """One SELECT: how many live instances are on `host`."""
    return session.scalar(select(func.count()).select_from(Instance)
                          .where(Instance.deleted == 0, Instance.host == host))


def count_unfinished_migrations(session: Session, host: str) -> int:
    """One SELECT: how many live migrations from or to `host` are not finished (still hold
    resources)."""
    return session.scalar(
        select(func.count()).select_from(Migration)
        .where(Migration.deleted == 0,
               or_(Migration.source_compute == host, Migration.dest_compute == host),
               Migration.status.not_in(FINISHED_MIGRATION_STATUSES)))


def count_done_evacuations(session: Session, host: str) -> int:
    """One SELECT: how many live evacuations from `host` are in status 'done' (the destination
    took over; the source's agent has not destroyed its copy yet)."""
    return session.scalar(
        select(func.count()).select_from(Migration)
        .where(Migration.deleted == 0, Migration.source_compute == host,
               Migration.migration_type == EVACUATION, Migration.status == EVACUATION_DONE))
