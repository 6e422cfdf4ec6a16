"""Instances as the control plane reads and creates them (nova's servers), each on the caller's
session, as agent.db.records.InstanceRecord. State changes go through
compute_queries.save_instances (the conditional save)."""

from __future__ import annotations

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from agent.db.models import Instance
from agent.db.records import INSTANCE_COLUMNS, InstanceRecord

_I = Instance.__table__


def find_servers(session: Session, key: str, *, deleted: bool = False) -> list[InstanceRecord]:
    """The instances whose uuid or display name is `key` (live ones only unless `deleted`)."""
    stmt = select(*INSTANCE_COLUMNS).where(or_(_I.c.uuid == key, _I.c.display_name == key))
    if not deleted:
        stmt = stmt.where(_I.c.deleted == 0)
    return [InstanceRecord(*row) for row in session.execute(stmt.order_by(_I.c.id))]


def list_servers(session: Session, host: str | None = None) -> list[InstanceRecord]:
    """The live instances (of `host` only, when given), oldest first."""
    stmt = select(*INSTANCE_COLUMNS).where(_I.c.deleted == 0)
    if host is not None:
        stmt = stmt.where(_I.c.host == host)
    return [InstanceRecord(*row) for row in session.execute(stmt.order_by(_I.c.id))]


def page_servers(session: Session, limit: int, after: str | None = None
                 ) -> list[InstanceRecord] | None:
    """One SELECT: at most `limit` live instances in nova's default order for a server list
    (created_at newest first, then id highest first), starting after the instance whose uuid
    is `after` (deleted ones too, as nova resolves a marker with read_deleted), resolved by
    subqueries of the same SELECT. When that page is empty, a second SELECT tells the end of
    the list from an unknown marker: None when no instance has the uuid `after`."""
    stmt = select(*INSTANCE_COLUMNS).where(_I.c.deleted == 0)
    if after is not None:
        created = select(_I.c.created_at).where(_I.c.uuid == after).scalar_subquery()
        marker_id = select(_I.c.id).where(_I.c.uuid == after).scalar_subquery()
        stmt = stmt.where(or_(_I.c.created_at < created,
                              and_(_I.c.created_at == created, _I.c.id < marker_id)))
    rows = session.execute(stmt.order_by(_I.c.created_at.desc(), _I.c.id.desc())
                           .limit(limit)).all()
    if after is not None and not rows and session.execute(
            select(_I.c.id).where(_I.c.uuid == after)).first() is None:
        return None
    return [InstanceRecord(*row) for row in rows]


def insert_server(session: Session, **values) -> InstanceRecord:
    """Insert one instance row of Instance's columns and return it."""
    result = session.execute(insert(_I).values(**values))
    row = session.execute(select(*INSTANCE_COLUMNS).where(
        _I.c.id == result.inserted_primary_key[0])).one()
    return InstanceRecord(*row)
