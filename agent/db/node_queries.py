"""Compute nodes as the scheduler reads them: every live node of the given hosts, in one
SELECT on the caller's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.db.models import ComputeNode

_N = ComputeNode.__table__


@dataclass(frozen=True)
class NodeResources:
    """A node's size and usage as the resource tracker last saved them (vcpus, MiB, GiB);
    ratios None until the node's first audit."""
    host: str
    hypervisor_hostname: str
    vcpus: int
    vcpus_used: int
    memory_mb: int
    free_ram_mb: int | None
    local_gb: int
    free_disk_gb: int | None
    disk_available_least: int | None
    cpu_allocation_ratio: float | None
    ram_allocation_ratio: float | None
    disk_allocation_ratio: float | None


_COLUMNS = [getattr(_N.c, f) for f in NodeResources.__dataclass_fields__]


def load_node_names(session: Session, host: str) -> list[str]:
    """One SELECT: the hypervisor hostnames of `host`'s live compute nodes, by id."""
    return list(session.scalars(select(_N.c.hypervisor_hostname)
                                .where(_N.c.host == host, _N.c.deleted == 0).order_by(_N.c.id)))


def load_node_resources(session: Session, hosts: Collection[str]) -> list[NodeResources]:
    """One SELECT: the live compute nodes of `hosts`, by host and hypervisor hostname."""
    if not hosts:
        return []
    rows = session.execute(select(*_COLUMNS).where(_N.c.host.in_(list(hosts)), _N.c.deleted == 0)
                           .order_by(_N.c.host, _N.c.hypervisor_hostname))
    return [NodeResources(*row) for row in rows]
