"""What a fleet leaves behind, removed at its end (unless `agent fleet --keep`): the rows of its
simulated hosts (services, compute nodes, instances) and their state directories.

Only the fleet's own host names are touched, in one transaction; rows of any other host stay.
The rows are deleted, not soft-deleted: a load test should leave the tables as it found them.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from agent.config import short_reason
from agent.db.models import ComputeNode, Instance, Service
from agent.display import plural
from agent.vocabulary import COMPUTE_BINARY

LOG = logging.getLogger(__name__)

# Host names per DELETE ... WHERE host IN (...), well below every backend's parameter limit.
CHUNK = 500


@dataclass(frozen=True)
class Cleanup:
    services: int = 0
    compute_nodes: int = 0
    instances: int = 0
    state_dirs: int = 0
    error: str | None = None  # why some of it could not be removed

    def describe(self) -> str:
        """One line for the report: what was removed, and what was not."""
        removed = (f"removed {plural(self.services, 'service row')}, "
                   f"{plural(self.compute_nodes, 'compute node')}, "
                   f"{plural(self.instances, 'instance')} and "
                   f"{plural(self.state_dirs, 'state directory', 'state directories')}")
        return removed + (f"; left the rest: {self.error}" if self.error else "")


def remove_fleet_rows(db, hosts: Sequence[str]) -> tuple[int, int, int]:
    """Delete the services (compute binary), compute nodes and instances of `hosts`, live or
    soft-deleted, in one transaction. Returns the (services, compute nodes, instances)
    counts."""
    services = nodes = instances = 0
    with db.sessions.begin() as session:
        for start in range(0, len(hosts), CHUNK):
            chunk = list(hosts[start:start + CHUNK])
            instances += session.execute(
                delete(Instance).where(Instance.host.in_(chunk))).rowcount
            nodes += session.execute(
                delete(ComputeNode).where(ComputeNode.host.in_(chunk))).rowcount
            services += session.execute(
                delete(Service).where(Service.host.in_(chunk),
                                      Service.binary == COMPUTE_BINARY)).rowcount
    return services, nodes, instances


def remove_state_dirs(state_root: str, hosts: Sequence[str]) -> int:
    """Remove each host's directory under `state_root`, then `state_root` if that left it
    empty. Returns how many host directories were removed."""
    removed = 0
    for host in hosts:
        path = os.path.join(state_root, host)
        if os.path.isdir(path):
            shutil.rmtree(path)
            removed += 1
    try:
        os.rmdir(state_root)
    except OSError:
        pass  # absent, or holds something that is not ours
    return removed


def clean_up(db, state_root: str, hosts: Sequence[str]) -> Cleanup:
    """Both of the above; a failure is logged and reported, never raised (the run's report
    matters more)."""
    try:
        services, nodes, instances = remove_fleet_rows(db, hosts)
    except SQLAlchemyError as exc:
        result = Cleanup(error=f"rows: {short_reason(exc)}")
    else:
        result = Cleanup(services, nodes, instances)
    try:
        dirs = remove_state_dirs(state_root, hosts)
    except OSError as exc:
        reason = f"state directories under {state_root}: {exc.strerror or exc}"
        result = Cleanup(result.services, result.compute_nodes, result.instances,
                         error="; ".join(filter(None, (result.error, reason))))
    else:
        result = Cleanup(result.services, result.compute_nodes, result.instances, dirs,
                         result.error)
    (LOG.warning if result.error else LOG.info)("fleet: %s (--keep keeps them)",
                                                result.describe())
    return result
