"""Every SQL statement of the compute manager and the resource tracker.

Reads return frozen records; writes take lists and run as ONE executemany per kind of change, so
the number of statements of init_host and of an audit does not grow with the instance count.
Instance and migration rows are written only through the conditional save (conditional_save.py):
a row another host or an operator changed since it was read is not overwritten, and the caller
learns which rows lost.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from agent import vocabulary as states
from agent.db.conditional_save import RowSave, SaveResult, save_row, save_rows
from agent.db.models import ComputeNode, Instance, Migration, Service, utcnow
from agent.db.read_only import refuses_writes
from agent.db.records import (INSTANCE_COLUMNS, MIGRATION_COLUMNS, NODE_COLUMNS,
                              NODE_RECORD_COLUMNS, InstanceRecord, MigrationRecord, NodeRecord)

_I = Instance.__table__
_M = Migration.__table__
_N = ComputeNode.__table__

# create_compute_node's answer on a read-only database (a dry run).
NOT_WRITTEN = "not-written"


@dataclass(frozen=True)
class InstanceUpdate:
    """New values of one instance row (vm_state, task_state, power_state, host, node),
    written only where the row is still as it was read: on `host` (the saving host's name),
    live, and with the `expected` values (e.g. the task_state and vm_state that were read).
    `delete` completes a delete (soft delete: deleted = id, deleted_at = now)."""

    id: int
    uuid: str
    expected: Mapping[str, object]
    values: Mapping[str, object]
    delete: bool = False


@dataclass(frozen=True)
class MigrationUpdate:
    """A migration's new status, written only where the row still has `expected` (at least
    the status that was read)."""

    id: int
    expected: Mapping[str, object]
    status: str


@dataclass(frozen=True)
class InstanceOwner:
    """Who an instance row belongs to now, and its states (the cheap re-read before acting on
    a guest)."""

    id: int
    uuid: str
    host: str | None
    vm_state: str | None
    task_state: str | None


# The reads that every audit runs are built once, with bound parameters: building a statement
# and computing its cache key cost more CPU than running it (a fleet of simulated hosts audits
# hundreds of them per second).
_HOST = bindparam("host")
_HOST_INSTANCES = (select(*INSTANCE_COLUMNS).where(_I.c.host == _HOST, _I.c.deleted == 0)
                   .order_by(_I.c.id))
_MOVING_UUIDS = (select(_M.c.instance_uuid)
                 .where(or_(_M.c.source_compute == _HOST, _M.c.dest_compute == _HOST),
                        _M.c.status.not_in(states.FINISHED_MIGRATION_STATUSES),
                        _M.c.deleted == 0)
                 .scalar_subquery())
_TRACKED_INSTANCES = (select(*INSTANCE_COLUMNS)
                      .where(or_(_I.c.host == _HOST, _I.c.uuid.in_(_MOVING_UUIDS)),
                             _I.c.deleted == 0)
                      .order_by(_I.c.id))
_HOST_MIGRATIONS = (select(*MIGRATION_COLUMNS)
                    .where(or_(and_(or_(_M.c.source_compute == _HOST, _M.c.dest_compute == _HOST),
                                    _M.c.status.not_in(states.FINISHED_MIGRATION_STATUSES),
                                    _M.c.deleted == 0),
                               and_(_M.c.source_compute == _HOST,
                                    _M.c.migration_type == states.EVACUATION,
                                    _M.c.status.in_(states.EVACUATION_CLEANUP_STATUSES))))
                    .order_by(_M.c.id))
_COMPUTE_NODES = (select(*NODE_RECORD_COLUMNS)
                  .where(or_(_N.c.host == _HOST,
                             _N.c.uuid.in_(bindparam("uuids", expanding=True))),
                         _N.c.deleted == 0)
                  .order_by(_N.c.id))


_HOST_INSTANCES_LOCKED = _HOST_INSTANCES.with_for_update()


def load_host_instances(session: Session, host: str, *,
                        lock: bool = False) -> list[InstanceRecord]:
    """One SELECT: the live (not soft-deleted) instances of `host`, by id; with `lock`, locked
    FOR UPDATE until the session's transaction ends (server databases; SQLite has no row
    locks)."""
    stmt = _HOST_INSTANCES_LOCKED if lock else _HOST_INSTANCES
    return [InstanceRecord(*row) for row in session.execute(stmt, {"host": host})]


def insert_migrations(session: Session, rows: Sequence[Mapping[str, object]]) -> dict[str, int]:
    """One executemany INSERT of new migrations rows (column: value, each with its uuid), then
    one SELECT of their ids. Returns {uuid: id}."""
    session.execute(insert(_M), [dict(row) for row in rows])
    return dict(session.execute(select(_M.c.uuid, _M.c.id)
                                .where(_M.c.uuid.in_([row["uuid"] for row in rows]))).all())


def load_tracked_instances(session: Session, host: str) -> list[InstanceRecord]:
    """One SELECT: the live instances of `host` and those that in-progress migrations move to
    or from it (their usage counts on this host's nodes)."""
    return [InstanceRecord(*row) for row in session.execute(_TRACKED_INSTANCES, {"host": host})]


def load_host_migrations(session: Session, host: str) -> list[MigrationRecord]:
    """One SELECT: in-progress migrations from or to `host`, and evacuations from `host` whose
    guest may still be here (soft-deleted records included, as nova reads them)."""
    return [MigrationRecord(*row) for row in session.execute(_HOST_MIGRATIONS, {"host": host})]


_BY_UUIDS = (select(*INSTANCE_COLUMNS)
              .where(_I.c.uuid.in_(bindparam("uuids", expanding=True)), _I.c.deleted == 0)
              .order_by(_I.c.id))


def load_instances_by_uuid(session: Session, uuids: Collection[str]) -> list[InstanceRecord]:
    """One SELECT, built once: the live instances with these uuids (an empty list still runs
    it, so the statement count does not depend on the data)."""
    rows = session.execute(_BY_UUIDS, {"uuids": list(uuids)})
    return [InstanceRecord(*row) for row in rows]


def load_deleted_instances(session: Session, host: str, uuids: Collection[str]
                           ) -> list[InstanceRecord]:
    """One SELECT: the deleted (soft-deleted) instance rows of `host` among `uuids`, the guests
    the hypervisor still has (an empty list still runs it)."""
    rows = session.execute(select(*INSTANCE_COLUMNS)
                           .where(_I.c.uuid.in_(list(uuids)), _I.c.host == host,
                                  _I.c.deleted != 0)
                           .order_by(_I.c.id))
    return [InstanceRecord(*row) for row in rows]


_ONE_INSTANCE = select(*INSTANCE_COLUMNS).where(_I.c.uuid == bindparam("uuid"),
                                                 _I.c.deleted == 0)


def load_instance(session: Session, uuid: str) -> InstanceRecord | None:
    """One SELECT, built once: the live instance with this uuid, or None."""
    row = session.execute(_ONE_INSTANCE, {"uuid": uuid}).first()
    return InstanceRecord(*row) if row is not None else None


_ONE_INSTANCE_AT = _ONE_INSTANCE.add_columns(utcnow())


def load_instance_at(session: Session, uuid: str
                     ) -> tuple[InstanceRecord | None, dt.datetime | None]:
    """One SELECT, built once: the live instance with this uuid and the database's clock at
    the read (UTC), or (None, None) (an RPC operation's re-read of its row: the time starts
    its action event)."""
    row = session.execute(_ONE_INSTANCE_AT, {"uuid": uuid}).first()
    if row is None:
        return None, None
    return InstanceRecord(*row[:-1]), row[-1]


def load_instance_owners(session: Session, host: str, uuids: Collection[str]
                         ) -> dict[str, InstanceOwner]:
    """Host and states of `host`'s live instances and of the live ones among `uuids` (uuid ->
    owner; soft-deleted or missing ones are absent): one SELECT of `host`'s live rows (no
    parameter per uuid), and a second one only for those of `uuids` it did not find (moved
    away, or gone)."""
    found = {row[1]: InstanceOwner(*row) for row in session.execute(
        _OWNERS.where(_I.c.host == bindparam("host")), {"host": host}).tuples()}
    missing = [u for u in uuids if u not in found]
    if missing:
        found.update((row[1], InstanceOwner(*row)) for row in session.execute(
            _OWNERS.where(_I.c.uuid.in_(missing))).tuples())
    return found


_OWNERS = select(_I.c.id, _I.c.uuid, _I.c.host, _I.c.vm_state, _I.c.task_state).where(
    _I.c.deleted == 0)


# A completed delete: shared by every row of a batch (one executemany).
_SOFT_DELETE = {"deleted": _I.c.id, "deleted_at": utcnow()}


def save_instances(session: Session, host: str, updates: Sequence[InstanceUpdate]
                   ) -> SaveResult:
    """Conditional save of instance rows (conditional_save.save_rows): each row is written only
    where it is still live, on `host`, and holds its `expected` values. At most three
    statements (the locking read, state changes, completed deletes) whatever the count.
    Returns per row whether the save won; the caller logs the lost ones."""
    saves = [RowSave(u.id, {**u.expected, "host": host, "deleted": 0},
                     {**u.values, **(_SOFT_DELETE if u.delete else {})}, u.uuid)
             for u in updates]
    return save_rows(session, _I, saves)


def save_instance(session: Session, host: str, update: InstanceUpdate) -> SaveResult:
    """`save_instances` of one row (an RPC operation's): one statement when the save wins
    (conditional_save.save_row), the locking read too when it does not."""
    save = RowSave(update.id, {**update.expected, "host": host, "deleted": 0},
                   {**update.values, **(_SOFT_DELETE if update.delete else {})}, update.uuid)
    return save_row(session, _I, save)


def save_migrations(session: Session, updates: Sequence[MigrationUpdate]) -> SaveResult:
    """Conditional save of migrations.status (conditional_save.save_rows): written only where
    the row still holds its `expected` values. At most two statements."""
    return save_rows(session, _M, [RowSave(u.id, u.expected, {"status": u.status},
                                           f"migration {u.id}") for u in updates])


def load_compute_nodes(session: Session, host: str,
                       uuids: Collection[str] = ()) -> list[NodeRecord]:
    """One SELECT: live compute_nodes rows of `host`, and any live row whose uuid is in
    `uuids` (this node's identity, wherever the database puts it)."""
    rows = session.execute(_COMPUTE_NODES, {"host": host, "uuids": list(uuids)})
    return [NodeRecord(*row) for row in rows]


def load_identity_nodes(session: Session, host: str, uuids: Collection[str],
                        nodenames: Collection[str]) -> list[NodeRecord]:
    """One SELECT for the node identity check: live compute_nodes rows of `host`, with a uuid
    in `uuids`, or for a hypervisor hostname in `nodenames` (whichever host has them)."""
    rows = session.execute(select(*NODE_RECORD_COLUMNS)
                           .where(or_(_N.c.host == host, _N.c.uuid.in_(list(uuids)),
                                      _N.c.hypervisor_hostname.in_(list(nodenames))),
                                  _N.c.deleted == 0).order_by(_N.c.id))
    return [NodeRecord(*row) for row in rows]


def is_service_live(session: Session, service_id: int) -> bool:
    """One SELECT: whether service `service_id` still has its live (not deleted) row."""
    return session.execute(select(Service.id).where(Service.id == service_id,
                                                    Service.deleted == 0)).first() is not None


def create_compute_node(session: Session, uuid: str, values: Mapping[str, object]) -> str:
    """The node row with this uuid, made live with `values`: a soft-deleted row is brought back
    (its uuid is unique among deleted rows too, so a node whose service was deleted keeps its
    identity when it registers again, as nova undeletes it), else a new row is inserted.
    Returns 'revived' or 'inserted'; on a read-only database (a dry run) nothing is written
    and it returns 'not-written'."""
    if refuses_writes(session):
        return NOT_WRITTEN
    revived = session.execute(update(_N).where(_N.c.uuid == uuid, _N.c.deleted != 0)
                              .values(deleted=0, deleted_at=None, updated_at=utcnow(),
                                      **values)).rowcount
    if revived:
        return "revived"
    session.execute(insert(_N).values(uuid=uuid, **values))
    return "inserted"


def update_compute_nodes(session: Session, changes: Sequence[tuple[int, Mapping[str, object]]]
                         ) -> bool:
    """One executemany UPDATE of every tracker-owned column, by id. False when nothing was
    written because the database is read-only (a dry run)."""
    if refuses_writes(session):
        return False
    if not changes:
        return True
    stmt = (update(_N).where(_N.c.id == bindparam("b_id"))
            .values(updated_at=utcnow(), **{c: bindparam("b_" + c) for c in NODE_COLUMNS}))
    session.execute(stmt, [{"b_id": nid, **{"b_" + c: values[c] for c in NODE_COLUMNS}}
                           for nid, values in changes])
    return True


def stats_json(stats: Mapping[str, str]) -> str:
    return json.dumps(dict(stats), sort_keys=True)
