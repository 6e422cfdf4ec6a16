"""The control-plane side of a host evacuation (nova's `evacuate` for every instance of a host):
move the instances of a dead source host to a destination host, leaving one 'evacuation'
migration record per instance for the source's agent to act on when it starts again (it then
destroys its local copies and completes the records: agent/compute/evacuation.py).

`check_evacuation` is pure: given both service rows, their compute nodes and the database's
clock, it raises the typed refusal (agent.control.errors), or says which node to use.
`evacuate_host` does the I/O in the caller's session, so all of it is ONE transaction (the
source's service row locked first): every record and every move, or none; the caller commits
through `commit_evacuation`. A dry run reads and checks the same way and writes nothing.

Only active, stopped and error instances are evacuated (nova's rule, whatever their task); the
others stay on the source and are listed as not evacuable. The moves go through the conditional
save (agent/db/conditional_save.py), as every other instance write. When the connection fails
while committing, the outcome is unknown and `commit_evacuation` raises OutcomeUnknown (never
"nothing changed").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid as uuid_lib
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from agent import vocabulary as states
from agent.context import RequestContext
from agent.control.errors import (DestinationDisabled, DestinationDown, DestinationForcedDown,
                                  DestinationNodes, OutcomeUnknown, SameHost, ServiceIsUp)
from agent.control.casts import Cast, instance_object
from agent.control.services import find_service
from agent.db.action_queries import start_action
from agent.db import compute_queries as q
from agent.db.node_queries import load_node_names
from agent.db.service_queries import ServiceRecord, database_now
from agent.display import plural
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
    # With `rebuild`: the request id of the 'evacuate' actions and the casts to send after
    # commit (rebuild_instance(recreate=True) to the destination, one per moved instance).
    request_id: str | None = None
    casts: tuple[Cast, ...] = ()


@dataclass(frozen=True)
class EvacuationTarget:
    """What check_evacuation decides: the node the instances go to, and why the source may be
    evacuated."""

    dest_node: str
    source_state: str


def check_evacuation(source: ServiceRecord, dest: ServiceRecord, *, db_now: dt.datetime,
                     service_down_time: float, dest_nodes: Sequence[str],
                     binary: str = COMPUTE_BINARY
                     ) -> EvacuationTarget:
    """The target; or, refused: SameHost, ServiceIsUp (the source), DestinationForcedDown,
    DestinationDown, DestinationDisabled, DestinationNodes (none, or several: not supported).
    Liveness is judged on `db_now` (the database's clock) against `service_down_time`
    seconds."""
    if source.host == dest.host:
        raise SameHost(source.host)
    src_state = state_of(source, db_now, service_down_time)
    if src_state.up:
        raise ServiceIsUp(source.host, binary, src_state.age_seconds, service_down_time)
    dst_state = state_of(dest, db_now, service_down_time)
    if dest.forced_down:
        raise DestinationForcedDown(dest.host)
    if not dst_state.up:
        raise DestinationDown(dest.host, dst_state.reason)
    if dest.disabled:
        raise DestinationDisabled(dest.host, dest.disabled_reason)
    if len(dest_nodes) != 1:
        raise DestinationNodes(dest.host, dest_nodes)
    why = "forced down" if source.forced_down else f"down: {src_state.reason}"
    return EvacuationTarget(dest_nodes[0], why)


def evacuable(vm_state: str | None) -> bool:
    """nova's rule: only active, stopped and error instances may be evacuated (any task)."""
    return vm_state in EVACUABLE_VM_STATES


def evacuate_host(session: Session, source_host: str, dest_host: str, *,
                  service_down_time: float, binary: str = COMPUTE_BINARY,
                  dry_run: bool = False, rebuild: bool = False) -> EvacuationResult:
    """Evacuate every evacuable live instance of `source_host` to `dest_host` in the caller's
    session (see the module docstring); the others stay and are listed in `not_evacuable`.
    Refused, before anything is written: ServiceNotFound (either host) or a refusal of
    check_evacuation. The caller commits with `commit_evacuation`.

    `rebuild` ends as nova's evacuate does: each moved instance is saved with task_state
    rebuilding and an 'evacuate' action under one new request id, and the result carries a
    rebuild_instance(recreate=True) cast to the destination per instance, for the caller to
    send after commit (the destination's agent spawns the guest). Without it the task_state
    is left as it was and no cast is prepared (no broker to send it through)."""
    source = find_service(session, source_host, binary, lock=True, role="source host")
    dest = find_service(session, dest_host, binary, role="destination host")
    db_now = database_now(session)
    source_nodes = load_node_names(session, source_host)
    dest_nodes = load_node_names(session, dest_host)
    target = check_evacuation(source, dest, db_now=db_now,
                              service_down_time=service_down_time, dest_nodes=dest_nodes,
                              binary=binary)
    rows = q.load_host_instances(session, source_host, lock=True)
    default_node = source_nodes[0] if source_nodes else source_host
    stay = tuple(NotEvacuable(r.uuid, r.name, r.vm_state)
                 for r in rows if not evacuable(r.vm_state))
    rows = [r for r in rows if evacuable(r.vm_state)]
    planned = [EvacuatedInstance(r.uuid, r.name, r.node or default_node,
                                 str(uuid_lib.uuid4()), None) for r in rows]
    result = EvacuationResult(source_host, dest_host, target.dest_node, target.source_state,
                              tuple(planned), dry_run, stay)
    if dry_run or not planned:  # nothing written: the commit only releases the locks
        return result
    moved = {"host": dest_host, "node": target.dest_node}
    if rebuild:
        moved["task_state"] = states.REBUILDING
    saved = q.save_instances(session, source_host, [
        q.InstanceUpdate(r.id, r.uuid, {"vm_state": r.vm_state, "task_state": r.task_state},
                         moved) for r in rows])
    # The rows are locked above on server databases; SQLite locks only from the save on, so
    # a row changed in between is not moved (and has no record).
    planned = [p for p, r in zip(planned, rows) if r.id in saved.won]
    result = dataclasses.replace(result, changed=tuple((lost.label, lost.describe())
                                                       for lost in saved.lost))
    if not planned:
        return dataclasses.replace(result, instances=())
    ids = q.insert_migrations(session, [
        {"uuid": p.migration_uuid, "instance_uuid": p.uuid, "source_compute": source_host,
         "dest_compute": dest_host, "source_node": p.source_node,
         "dest_node": target.dest_node, "migration_type": states.EVACUATION,
         "status": states.EVACUATION_DONE, "deleted": 0} for p in planned])
    done = tuple(dataclasses.replace(p, migration_id=ids[p.migration_uuid]) for p in planned)
    result = dataclasses.replace(result, instances=done)
    return _with_rebuilds(session, result, rows) if rebuild else result


def _with_rebuilds(session: Session, result: EvacuationResult, rows) -> EvacuationResult:
    """Record the 'evacuate' actions and prepare the destination's rebuild casts."""
    context = RequestContext.new()
    vm_states = {r.uuid: r.vm_state for r in rows}
    casts = []
    for p in result.instances:
        start_action(session, instance_uuid=p.uuid, action="evacuate",
                     request_id=context.request_id)
        instance = instance_object({"uuid": p.uuid, "display_name": p.name,
                                    "host": result.dest_host, "node": result.dest_node,
                                    "vm_state": vm_states[p.uuid],
                                    "task_state": states.REBUILDING})
        casts.append(Cast(result.dest_host, "rebuild_instance", context, {
            "instance": instance, "orig_image_ref": None, "image_ref": None,
            "injected_files": [], "new_pass": None, "orig_sys_metadata": {}, "bdms": [],
            "recreate": True, "on_shared_storage": None, "preserve_ephemeral": False,
            "migration": None, "scheduled_node": result.dest_node, "limits": {},
            "request_spec": None, "accel_uuids": []}))
    return dataclasses.replace(result, request_id=context.request_id, casts=tuple(casts))


def commit_evacuation(session: Session, result: EvacuationResult) -> None:
    """Commit the caller's session holding `result`'s writes. OutcomeUnknown (the database's
    error as its __cause__) when the connection failed while moves were committing: the
    server may have made every move or none."""
    try:
        session.commit()
    except DBAPIError as exc:
        if result.dry_run or not result.instances:
            raise
        raise OutcomeUnknown(result.source_host, result.dest_host,
                             len(result.instances)) from exc
    if result.instances and not result.dry_run:
        LOG.info("evacuated %s from host %s (%s) to host %s node %s",
                 plural(len(result.instances), "instance"), result.source_host,
                 result.source_state, result.dest_host, result.dest_node)

