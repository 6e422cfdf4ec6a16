"""The control-plane side of a host evacuation (nova's `evacuate` for every instance of a host):
move the instances of a dead source host to a destination host, leaving one 'evacuation'
migration record per instance for the source's agent to act on when it starts again (it then
destroys its local copies and completes the records: agent/compute/evacuation.py).

`check_evacuation` is pure: given both service rows, their compute nodes and the database's
clock, it says why the request is refused, or which nodes to use. `evacuate_host` does the I/O,
all in ONE transaction (the source's service row locked first): every record and every move, or
none. A dry run reads and checks the same way and writes nothing.

Only active, stopped and error instances are evacuated (nova's rule, whatever their task); the
others stay on the source and are listed as not evacuable. The moves go through the conditional
save (agent/db/conditional_save.py), as every other instance write. When the connection fails
while committing, the outcome is unknown and `OutcomeUnknown` says so (never "nothing changed").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid as uuid_lib
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError

from agent import vocabulary as states
from agent.db import compute_queries as q
from agent.db.models import ComputeNode, Instance, Migration, utcnow
from agent.db.service_queries import ServiceRow, find_service, service_row
from agent.display import plural
from agent.errors import ServiceError
from agent.liveness import state_of
from agent.vocabulary import COMPUTE_BINARY

LOG = logging.getLogger(__name__)

EVACUABLE_VM_STATES = frozenset({states.ACTIVE, states.STOPPED, states.ERROR})


@dataclass(frozen=True)
class EvacuatedInstance:
    uuid: str
    name: str
    source_node: str
    migration_uuid: str
    migration_id: int | None  # None in a dry run


@dataclass(frozen=True)
class NotEvacuable:
    """An instance left on the source: nova evacuates only active, stopped and error ones."""

    uuid: str
    name: str
    vm_state: str | None


@dataclass(frozen=True)
class EvacuationResult:
    source_host: str
    dest_host: str
    dest_node: str
    source_state: str        # "forced down" or "down: last seen ... ago"
    instances: tuple[EvacuatedInstance, ...]
    dry_run: bool
    not_evacuable: tuple[NotEvacuable, ...] = ()
    changed: tuple[tuple[str, str], ...] = ()  # (uuid, what changed): read but not moved


class OutcomeUnknown(ServiceError):
    """The connection failed while the evacuation was committing: the server may have made
    every move or none. The database's error is the exception's __cause__."""

    def __init__(self, source_host: str, dest_host: str, count: int):
        super().__init__(f"the connection failed while committing the evacuation of host "
                         f"{source_host} to host {dest_host}: the outcome is unknown")
        self.source_host = source_host
        self.dest_host = dest_host
        self.count = count


@dataclass(frozen=True)
class EvacuationTarget:
    """What check_evacuation decides: the node the instances go to, and why the source may be
    evacuated."""

    dest_node: str
    source_state: str


def check_evacuation(source: ServiceRow, dest: ServiceRow, *, db_now: dt.datetime,
                     service_down_time: float, dest_nodes: Sequence[str],
                     binary: str = COMPUTE_BINARY
                     ) -> EvacuationTarget:
    """Raises ServiceError saying why the evacuation is refused; otherwise the target."""
    if source.host == dest.host:
        raise ServiceError(f"cannot evacuate host {source.host!r} to itself: --to must name "
                           "another host")
    src_state = state_of(source, db_now, service_down_time)
    if src_state.up:
        seen = ("" if src_state.age_seconds is None
                else f" (last seen {src_state.age_seconds:.0f} s ago)")
        raise ServiceError(
            f"service {binary} on host {source.host} is up{seen}: force it down first with "
            f"'agent services force-down --host {source.host}' or wait until it is down "
            f"(service_down_time {service_down_time:g} s)")
    dst_state = state_of(dest, db_now, service_down_time)
    if dest.forced_down:
        raise ServiceError(f"destination host {dest.host} is forced down: lift it with "
                           f"'agent services force-down --unset --host {dest.host}' or choose "
                           "another host")
    if not dst_state.up:
        raise ServiceError(f"destination host {dest.host} is down ({dst_state.reason}): its "
                           "agent must be running to take the instances")
    if dest.disabled:
        raise ServiceError(f"destination host {dest.host} is disabled"
                           f"{f' ({dest.disabled_reason})' if dest.disabled_reason else ''}: "
                           f"enable it with 'agent services enable --host {dest.host}' or "
                           "choose another host")
    if not dest_nodes:
        raise ServiceError(f"destination host {dest.host} has no compute node yet: wait until "
                           "its agent has finished start-up (its first resource audit creates "
                           "the node)")
    if len(dest_nodes) > 1:
        raise ServiceError(f"destination host {dest.host} has {len(dest_nodes)} compute nodes "
                           f"({', '.join(dest_nodes)}); evacuating to a host with several "
                           "nodes is not supported")
    why = "forced down" if source.forced_down else f"down: {src_state.reason}"
    return EvacuationTarget(dest_nodes[0], why)


def evacuable(vm_state: str | None) -> bool:
    """nova's rule: only active, stopped and error instances may be evacuated (any task)."""
    return vm_state in EVACUABLE_VM_STATES


def evacuate_host(db, source_host: str, dest_host: str, *, service_down_time: float,
                  binary: str = COMPUTE_BINARY, dry_run: bool = False) -> EvacuationResult:
    """Evacuate every evacuable live instance of `source_host` to `dest_host` (see the module
    docstring); the others stay and are listed in `not_evacuable`. Raises ServiceNotFound /
    ServiceError, changing nothing, when refused; OutcomeUnknown when the connection failed
    while committing (the moves may or may not have been made)."""
    session = db.sessions()
    try:
        result = _evacuate(session, source_host, dest_host, service_down_time, binary, dry_run)
        try:
            session.commit()
        except DBAPIError as exc:
            if result.dry_run or not result.instances:
                raise
            raise OutcomeUnknown(source_host, dest_host, len(result.instances)) from exc
    finally:
        session.close()
    if result.instances and not dry_run:
        LOG.info("evacuated %s from host %s (%s) to host %s node %s",
                 plural(len(result.instances), "instance"), source_host, result.source_state,
                 dest_host, result.dest_node)
    return result


def _evacuate(session, source_host: str, dest_host: str, service_down_time: float,
              binary: str, dry_run: bool) -> EvacuationResult:
    """Everything up to the commit, in the caller's transaction."""
    source = service_row(find_service(session, source_host, binary, lock=True,
                                      role="source host"))
    dest = service_row(find_service(session, dest_host, binary, role="destination host"))
    db_now = session.scalar(select(utcnow()))
    source_nodes = _nodes(session, source_host)
    dest_nodes = _nodes(session, dest_host)
    target = check_evacuation(source, dest, db_now=db_now,
                              service_down_time=service_down_time, dest_nodes=dest_nodes,
                              binary=binary)
    rows = session.execute(
        select(Instance.id, Instance.uuid, Instance.display_name, Instance.node,
               Instance.vm_state, Instance.task_state)
        .where(Instance.host == source_host, Instance.deleted == 0)
        .order_by(Instance.id).with_for_update()).all()
    default_node = source_nodes[0] if source_nodes else source_host
    stay = tuple(NotEvacuable(r.uuid, r.display_name or r.uuid, r.vm_state)
                 for r in rows if not evacuable(r.vm_state))
    rows = [r for r in rows if evacuable(r.vm_state)]
    planned = [EvacuatedInstance(r.uuid, r.display_name or r.uuid, r.node or default_node,
                                 str(uuid_lib.uuid4()), None) for r in rows]
    result = EvacuationResult(source_host, dest_host, target.dest_node, target.source_state,
                              tuple(planned), dry_run, stay)
    if dry_run or not planned:  # nothing written: the commit only releases the locks
        return result
    saved = q.save_instances(session, source_host, [
        q.InstanceUpdate(r.id, r.uuid, {"vm_state": r.vm_state, "task_state": r.task_state},
                         {"host": dest_host, "node": target.dest_node}) for r in rows])
    # The rows are locked above on server databases; SQLite locks only from the save on, so
    # a row changed in between is not moved (and has no record).
    planned = [p for p, r in zip(planned, rows) if r.id in saved.won]
    result = dataclasses.replace(result, changed=tuple((lost.label, lost.describe())
                                                       for lost in saved.lost))
    if not planned:
        return dataclasses.replace(result, instances=())
    session.execute(insert(Migration), [
        {"uuid": p.migration_uuid, "instance_uuid": p.uuid, "source_compute": source_host,
         "dest_compute": dest_host, "source_node": p.source_node,
         "dest_node": target.dest_node, "migration_type": states.EVACUATION,
         "status": states.EVACUATION_DONE, "deleted": 0} for p in planned])
    ids = dict(session.execute(
        select(Migration.uuid, Migration.id)
        .where(Migration.uuid.in_([p.migration_uuid for p in planned]))).all())
    done = tuple(dataclasses.replace(p, migration_id=ids[p.migration_uuid]) for p in planned)
    return dataclasses.replace(result, instances=done)


def _nodes(session, host: str) -> list[str]:
    return list(session.scalars(
        select(ComputeNode.hypervisor_hostname)
        .where(ComputeNode.host == host, ComputeNode.deleted == 0).order_by(ComputeNode.id)))
