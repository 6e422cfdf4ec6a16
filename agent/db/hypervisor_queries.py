"""Compute nodes with their compute service, as the hypervisor API lists them: one SELECT on
the caller's session, whatever the number of nodes (a page after a marker included; a second
only when that page is empty)."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib

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
                             node_uuid: str | None = None, limit: int | None = None,
                             after: str | None = None
                             ) -> tuple[dt.datetime | None,
                                        list[tuple[NodeRecord, ServiceRecord]]] | None:
    """One SELECT: the live compute nodes (optionally the one with `node_id` or `node_uuid`)
    joined to their host's live compute service, by node id, with the database's clock.
    Returns (db_now, [(NodeRecord, its ServiceRecord)]), db_now None when no node matches; a
    node whose service is gone is left out (nova lists a hypervisor only with its service).
    Table columns in the records' order: each row becomes its two records by position.

    Paging (nova's compute_node_get_all_by_pagination): at most `limit` nodes, and with
    `after` only those whose id is above that of the live node `after` names (its uuid, or
    its id as digits, as nova resolves a marker), resolved by a subquery of the same SELECT.
    When that page is empty, a second SELECT tells the end of the list from an unknown
    marker: None when no live node is `after`."""
    stmt = (select(*NODE_RECORD_COLUMNS, *RECORD_COLUMNS, utcnow().label("db_now"))
            .join(_S, and_(_S.c.host == _N.c.host, _S.c.binary == COMPUTE_BINARY,
                           _S.c.deleted == 0))
            .where(_N.c.deleted == 0))
    marker = None
    if after is not None:
        marker = _marker(after)
        if marker is None:
            return None
        stmt = stmt.where(_N.c.id > marker.scalar_subquery())
    if node_id is not None:
        stmt = stmt.where(_N.c.id == node_id)
    if node_uuid is not None:
        stmt = stmt.where(_N.c.uuid == node_uuid)
    stmt = stmt.order_by(_N.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = session.execute(stmt).all()
    if marker is not None and not rows and session.execute(marker).first() is None:
        return None
    db_now = rows[0][-1] if rows else None
    node, service = NodeRecord._make, ServiceRecord._make
    return db_now, [(node(row[:_NODE_END]), service(row[_NODE_END:_SERVICE_END]))
                    for row in rows]


def _marker(after: str):
    """The SELECT of the id of the live node a marker names (uuid or digits), or None when
    it can name no node."""
    try:
        match = _N.c.uuid == str(uuidlib.UUID(after))  # nova's is_uuid_like, then by uuid
    except ValueError:
        if not (after.isascii() and after.isdigit() and len(after) <= 18):
            return None
        match = _N.c.id == int(after)
    return select(_N.c.id).where(match, _N.c.deleted == 0)
