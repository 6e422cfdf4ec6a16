"""Compute nodes as the scheduler reads them: every live node of the given hosts, in one
SELECT on the caller's session, as agent.db.records.NodeRecord."""

from __future__ import annotations

from typing import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.db.models import ComputeNode
from agent.db.records import NODE_RECORD_COLUMNS, NodeRecord

_N = ComputeNode.__table__


def load_node_names(session: Session, host: str) -> list[str]:
    """One SELECT: the hypervisor hostnames of `host`'s live compute nodes, by id."""
    return list(session.scalars(select(_N.c.hypervisor_hostname)
                                .where(_N.c.host == host, _N.c.deleted == 0).order_by(_N.c.id)))


def load_node_resources(session: Session, hosts: Collection[str]) -> list[NodeRecord]:
    """One SELECT: the live compute nodes of `hosts`, by host and hypervisor hostname."""
    if not hosts:
        return []
    rows = session.execute(select(*NODE_RECORD_COLUMNS)
                           .where(_N.c.host.in_(list(hosts)), _N.c.deleted == 0)
                           .order_by(_N.c.host, _N.c.hypervisor_hostname))
    return [NodeRecord(*row) for row in rows]
