"""Compute nodes as the scheduler reads them: every live node of the given hosts, in one
SELECT on the caller's session, as agent.db.records.NodeRecord; what the instances the database
gives each node hold (the scheduler's claims); and the lock that makes a claim safe against a
concurrent one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from agent import vocabulary as states
from agent.db.models import ComputeNode, Instance
from agent.db.records import NODE_RECORD_COLUMNS, NodeRecord

_N = ComputeNode.__table__
_I = Instance.__table__


@dataclass(frozen=True)
class Claims:
    """What the live instances the database gives one (host, node) hold: vcpus, memory_mb,
    disk_gb (root_gb + ephemeral_gb, GiB) and swap_mb (MiB). `node` None: instances not yet
    given a node (they belong to the host's only node)."""
    host: str
    node: str | None
    vcpus: int
    memory_mb: int
    disk_gb: int
    swap_mb: int


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


# An instance holds resources unless deleted, or shelved-offloaded and not spawning back (the
# resource tracker's rule, agent.compute.usage.is_counted, as SQL).
_COUNTED = or_(_I.c.vm_state.is_(None),
               and_(_I.c.vm_state != states.DELETED,
                    or_(_I.c.vm_state != states.SHELVED_OFFLOADED,
                        _I.c.task_state == states.SPAWNING)))


def load_claims(session: Session, hosts: Collection[str], *, fresh: bool = False
                ) -> list[Claims]:
    """One SELECT: per (host, node) of `hosts`, the flavors their live counted instances hold.

    `fresh`: read what is committed now, even inside a transaction that has read before
    (after `lock_node`): on MySQL/MariaDB, whose REPEATABLE READ would answer from the
    transaction's first snapshot, a locking (shared) read; PostgreSQL's READ COMMITTED reads
    anew at every statement and SQLite's writer holds the whole file."""
    if not hosts:
        return []
    stmt = (select(_I.c.host, _I.c.node, func.coalesce(func.sum(_I.c.vcpus), 0),
                   func.coalesce(func.sum(_I.c.memory_mb), 0),
                   func.coalesce(func.sum(_I.c.root_gb + _I.c.ephemeral_gb), 0),
                   func.coalesce(func.sum(_I.c.swap), 0))
            .where(_I.c.host.in_(list(hosts)), _I.c.deleted == 0, _COUNTED)
            .group_by(_I.c.host, _I.c.node))
    if fresh and session.get_bind().dialect.name in ("mysql", "mariadb"):
        # Through the host index, so that only that host's index range is locked (a table
        # scan would lock every row and gap: every other create's insert would wait).
        stmt = stmt.with_for_update(read=True)
        for dialect in ("mysql", "mariadb"):
            stmt = stmt.with_hint(_I, "FORCE INDEX (instances_host_idx)", dialect)
    return [Claims(host, node, int(v), int(m), int(d), int(s))
            for host, node, v, m, d, s in session.execute(stmt)]


def lock_node(session: Session, host: str, hypervisor_hostname: str) -> NodeRecord | None:
    """The live node row, read and locked (SELECT ... FOR UPDATE) until the caller's
    transaction ends: a create that claims on this node waits here until the one before it
    committed its instance. SQLite has no row locks: there the caller's earlier write already
    holds the database's one writer lock. None when the node is gone."""
    row = session.execute(select(*NODE_RECORD_COLUMNS).where(
        _N.c.host == host, _N.c.hypervisor_hostname == hypervisor_hostname,
        _N.c.deleted == 0).with_for_update()).first()
    return None if row is None else NodeRecord(*row)
