"""Compute nodes with their compute service, as the hypervisor API lists them: one SELECT on
the caller's session, whatever the number of nodes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from agent.db.models import ComputeNode, Service, utcnow
from agent.db.records import NODE_RECORD_COLUMNS, NodeRecord
from agent.db.service_queries import RECORD_COLUMNS, ServiceRecord, service_record
from agent.vocabulary import COMPUTE_BINARY

_N = ComputeNode.__table__
_NODE_COLUMNS = [c.label(f"node_{c.name}") for c in NODE_RECORD_COLUMNS]


def list_nodes_with_services(session: Session, *, node_id: int | None = None,
                             node_uuid: str | None = None
                             ) -> tuple[dt.datetime | None,
                                        list[tuple[NodeRecord, ServiceRecord]]]:
    """One SELECT: the live compute nodes (optionally the one with `node_id` or `node_uuid`)
    joined to their host's live compute service, by node id, with the database's clock.
    Returns (db_now, [(NodeRecord, its ServiceRecord)]); a node whose service is gone is left
    out (nova lists a hypervisor only with its service)."""
    stmt = (select(*_NODE_COLUMNS, *RECORD_COLUMNS, utcnow().label("db_now"))
            .join(Service, and_(Service.host == _N.c.host, Service.binary == COMPUTE_BINARY,
                                Service.deleted == 0))
            .where(_N.c.deleted == 0))
    if node_id is not None:
        stmt = stmt.where(_N.c.id == node_id)
    if node_uuid is not None:
        stmt = stmt.where(_N.c.uuid == node_uuid)
    rows = session.execute(stmt.order_by(_N.c.id)).all()
    db_now = rows[0].db_now if rows else None
    width = len(_NODE_COLUMNS)
    return db_now, [(NodeRecord(*row[:width]), service_record(row)) for row in rows]
