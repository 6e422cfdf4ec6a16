"""Instances as the control plane reads and creates them (nova's servers), each on the caller's
session. State changes go through compute_queries.save_instances (the conditional save)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from agent.db.models import Instance

_I = Instance.__table__


@dataclass(frozen=True)
class ServerRecord:
    """One live instance row: sizes in nova's units; `flavor` the JSON copy of its flavor."""
    id: int
    uuid: str
    display_name: str | None
    host: str | None
    node: str | None
    vm_state: str | None
    task_state: str | None
    power_state: int | None
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    flavor: str | None
    instance_type_id: int | None
    image_ref: str | None
    user_id: str | None
    project_id: str | None
    created_at: dt.datetime | None
    launched_at: dt.datetime | None
    terminated_at: dt.datetime | None
    deleted: int


_COLUMNS = [getattr(_I.c, f) for f in ServerRecord.__dataclass_fields__]


def find_servers(session: Session, key: str, *, deleted: bool = False) -> list[ServerRecord]:
    """The instances whose uuid or display name is `key` (live ones only unless `deleted`)."""
    stmt = select(*_COLUMNS).where(or_(_I.c.uuid == key, _I.c.display_name == key))
    if not deleted:
        stmt = stmt.where(_I.c.deleted == 0)
    return [ServerRecord(*row) for row in session.execute(stmt.order_by(_I.c.id))]


def list_servers(session: Session, host: str | None = None) -> list[ServerRecord]:
    """The live instances (of `host` only, when given), oldest first."""
    stmt = select(*_COLUMNS).where(_I.c.deleted == 0)
    if host is not None:
        stmt = stmt.where(_I.c.host == host)
    return [ServerRecord(*row) for row in session.execute(stmt.order_by(_I.c.id))]


def insert_server(session: Session, **values) -> ServerRecord:
    """Insert one instance row of Instance's columns and return it."""
    result = session.execute(insert(_I).values(**values))
    row = session.execute(select(*_COLUMNS).where(
        _I.c.id == result.inserted_primary_key[0])).one()
    return ServerRecord(*row)
