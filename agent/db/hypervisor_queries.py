"""Compute nodes with their compute service, as the hypervisor API lists them: one SELECT on
the caller's session, whatever the number of nodes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from agent.db.models import ComputeNode, Service, utcnow
from agent.db.records import NODE_RECORD_COLUMNS, NodeRecord
from agent.db.service_queries import RECORD_COLUMNS, ServiceRecord
from agent.vocabulary import COMPUTE_BINARY

_S = Service.__table__
_N = ComputeNode.__table__
_NODE_END = len(NODE_RECORD_COLUMNS)
_SERVICE_END = _NODE_END + len(RECORD_COLUMNS)


def list_nodes_with_services(session: Session, *, node_id: int | None = None,
                             node_uuid: str | None = None
                             ) -> tuple[dt.datetime | None,
                                        list[tuple[NodeRecord, ServiceRecord]]]:
    """One SELECT: the live compute nodes (optionally the one with `node_id` or `node_uuid`)
    joined to their host's live compute service, by node id, with the database's clock.
    Returns (db_now, [(NodeRecord, its ServiceRecord)]), db_now None when no node matches; a
    node whose service is gone is left out (nova lists a hypervisor only with its service).
    Table columns in the records' order: each row becomes its two records by position."""
    stmt = (select(*NODE_RECORD_COLUMNS, *RECORD_COLUMNS, utcnow().label("db_now"))
            .join(_S, and_(_S.c.host == _N.c.host, _S.c.binary == COMPUTE_BINARY,
                           _S.c.deleted == 0))
            .where(_N.c.deleted == 0))
    if node_id is not None:
        stmt = stmt.where(_N.c.id == node_id)
    if node_uuid is not None:
        stmt = stmt.where(_N.c.uuid == node_uuid)
    rows = session.execute(stmt.order_by(_N.c.id)).all()
    db_now = rows[0][-1] if rows else None
    node, service = NodeRecord._make, ServiceRecord._make
    return db_now, [(node(row[:_NODE_END]), service(row[_NODE_END:_SERVICE_END]))
                    for row in rows]
