"""The flavors table (nova's API-database flavors): records, lookups, insert and delete, each on
the caller's session (the caller owns the transaction). No validation here: the rules are the
control plane's (agent.control.flavors).

Flavors are deleted for good, as nova's are; an instance keeps its own copy of the flavor
(instances.flavor, JSON) and so outlives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session

from agent.db.models import Flavor

_T = Flavor.__table__


@dataclass(frozen=True)
class FlavorRecord:
    """One flavor: memory_mb and swap in MiB, root_gb and ephemeral_gb in GiB."""
    id: int
    flavorid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    rxtx_factor: float
    disabled: bool
    is_public: bool
    description: str | None


_COLUMNS = [getattr(_T.c, f) for f in FlavorRecord.__dataclass_fields__]


def _record(row) -> FlavorRecord:
    values = row._asdict()
    values["disabled"] = bool(values["disabled"])
    values["is_public"] = bool(values["is_public"])
    return FlavorRecord(**values)


def list_flavors(session: Session) -> list[FlavorRecord]:
    """Every flavor, smallest first as nova lists them (memory_mb, then flavorid)."""
    rows = session.execute(select(*_COLUMNS).order_by(_T.c.memory_mb, _T.c.flavorid))
    return [_record(row) for row in rows]


def page_flavors(session: Session, limit: int, after: str | None = None
                 ) -> list[FlavorRecord] | None:
    """One SELECT: at most `limit` flavors in nova's default API order (flavorid, then id,
    ascending; flavorid is unique), starting after the flavorid `after`. When that page is
    empty, a second SELECT tells the end of the list from an unknown marker: None when no
    flavor has the flavorid `after`."""
    stmt = select(*_COLUMNS)
    if after is not None:
        stmt = stmt.where(_T.c.flavorid > after)
    rows = session.execute(stmt.order_by(_T.c.flavorid, _T.c.id).limit(limit)).all()
    if after is not None and not rows and session.execute(
            select(_T.c.id).where(_T.c.flavorid == after)).first() is None:
        return None
    return [_record(row) for row in rows]


def find_flavors(session: Session, key: str) -> list[FlavorRecord]:
    """The flavors whose name or flavorid is `key` (at most two: one by each)."""
    rows = session.execute(select(*_COLUMNS).where(or_(_T.c.name == key, _T.c.flavorid == key))
                           .order_by(_T.c.id))
    return [_record(row) for row in rows]


def flavor_by_id(session: Session, flavor_id: int) -> FlavorRecord | None:
    """The flavor with primary key `flavor_id` (instances.instance_type_id), or None."""
    row = session.execute(select(*_COLUMNS).where(_T.c.id == flavor_id)).first()
    return _record(row) if row is not None else None


def taken(session: Session, name: str, flavorid: str) -> tuple[bool, bool]:
    """(name in use, flavorid in use)."""
    rows = session.execute(select(_T.c.name, _T.c.flavorid).where(
        or_(_T.c.name == name, _T.c.flavorid == flavorid))).all()
    return any(r.name == name for r in rows), any(r.flavorid == flavorid for r in rows)


def insert_flavor(session: Session, **values) -> FlavorRecord:
    """Insert one flavor of FlavorRecord's fields (all but id) and return it. A name or
    flavorid already taken raises the database's IntegrityError (the unique constraints)."""
    result = session.execute(insert(_T).values(**values))
    record = flavor_by_id(session, int(result.inserted_primary_key[0]))
    assert record is not None
    return record


def delete_flavor(session: Session, flavor_id: int) -> bool:
    """Delete the flavor; whether a row was deleted."""
    return session.execute(delete(_T).where(_T.c.id == flavor_id)).rowcount == 1
