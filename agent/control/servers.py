"""Operator requests on instances (nova's servers): create (scheduled), stop, start, reboot,
pause, unpause, delete, and the reads (find by uuid or unique name, list, actions with their
events). One implementation for the command line and the API: each takes the caller's session
and returns records, raising an agent.control.errors type before anything is written.

A request that needs the instance's host to act returns a `Cast`; the caller sends it with
`send` only after its transaction committed (the host re-reads the row and must find the saved
task_state). Every instance write is the conditional save (compute_queries.save_instances) on
the host and states that were read; a lost race is InstanceChanged and writes nothing.
"""

from __future__ import annotations

import json
import random
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy.orm import Session

from agent import vocabulary as states
from agent.context import RequestContext
from agent.control import errors as e
from agent.control.flavors import find_flavor
from agent.control.host_states import schedule
from agent.control.scheduler import HostState, Request
from agent.control.casts import Cast, Caster, instance_object as nova_instance
from agent.control.casts import send as send_casts
from agent.control.server_rules import (DELETE_IGNORED, DELETE_LOCAL, RULES, check_host,
                                        check_state, delete_path)
from agent.db import action_queries as actions
from agent.db import server_queries as q
from agent.db.compute_queries import InstanceUpdate, save_instances
from agent.db.models import utcnow
from agent.db.records import InstanceRecord
from agent.db.service_queries import list_services
from agent.liveness import state_of
from agent.vocabulary import COMPUTE_BINARY

__all__ = ["Cast", "Caster", "Outcome", "send"]

FAULT_NO_VALID_HOST = 500  # nova records NoValidHost as a fault with code 500


@dataclass(frozen=True)
class Outcome:
    """A request's result: the instance as saved, the request id returned to the user, the
    cast to send after commit (None: nothing to send), and for a create that found no host
    the refusal (the instance was saved in ERROR with the fault, as nova does); for a delete,
    how it went (server_rules.delete_path: 'cast', 'local' or 'ignored')."""
    server: InstanceRecord
    request_id: str
    cast: Cast | None = None
    no_valid_host: e.NoValidHost | None = None
    host_state: HostState | None = None
    delete_path: str | None = None


def send(caster: Caster, outcome: Outcome) -> None:
    """Send the outcome's cast, if any (after the request's transaction committed)."""
    send_casts(caster, outcome.cast)


def find_server(session: Session, key: str) -> InstanceRecord:
    """The live instance whose uuid is `key`, else the one named `key`: InstanceNotFound,
    AmbiguousName when several have that name."""
    found = q.find_servers(session, key)
    by_uuid = [r for r in found if r.uuid == key]
    if by_uuid:
        return by_uuid[0]
    if len(found) > 1:
        raise e.AmbiguousName(key, [r.uuid for r in found])
    if not found:
        raise e.InstanceNotFound(key)
    return found[0]


def list_servers(session: Session, host: str | None = None) -> list[InstanceRecord]:
    return q.list_servers(session, host)


def server_actions(session: Session, key: str
                   ) -> tuple[InstanceRecord, list[actions.ActionRecord]]:
    """The instance (deleted ones too, by uuid) and its actions, oldest first, each with its
    events: what happened to it and which request did it."""
    found = [r for r in q.find_servers(session, key, deleted=True) if r.uuid == key]
    server = found[0] if found else find_server(session, key)
    return server, list(reversed(actions.list_actions_with_events(session, server.uuid)))


def instance_object(server: InstanceRecord, **changes: Any) -> dict[str, Any]:
    """The `instance` argument of a cast: nova's serialised Instance (the fields the compute
    side reads)."""
    data = {"uuid": server.uuid, "display_name": server.display_name, "host": server.host,
            "node": server.node, "vm_state": server.vm_state,
            "task_state": server.task_state, "power_state": server.power_state,
            "vcpus": server.vcpus, "memory_mb": server.memory_mb, "root_gb": server.root_gb,
            "ephemeral_gb": server.ephemeral_gb, "image_ref": server.image_ref,
            "user_id": server.user_id, "project_id": server.project_id, **changes}
    return nova_instance(data)


def _context(user_id: str | None, project_id: str | None, request_id: str | None,
             global_request_id: str | None) -> RequestContext:
    """The request's RPC context: the caller's request id, or a new one when None."""
    ids = {"request_id": request_id} if request_id else {}
    return RequestContext.new(user_id=user_id, project_id=project_id,
                              global_request_id=global_request_id, **ids)


def _save(session: Session, server: InstanceRecord, expected: Mapping[str, object],
          values: Mapping[str, object], delete: bool = False) -> InstanceRecord:
    result = save_instances(session, server.host, [InstanceUpdate(
        server.id, server.uuid, expected, values, delete)])
    if result.lost:
        lost = result.lost[0]
        raise e.InstanceChanged(server.uuid, lost.column, lost.found)
    return q.find_servers(session, server.uuid, deleted=True)[0]


def create_server(session: Session, name: str, flavor: str, *, service_down_time: float,
                  image_ref: str | None = None, host: str | None = None,
                  user_id: str | None = None, project_id: str | None = None,
                  rng: random.Random | None = None, request_id: str | None = None,
                  global_request_id: str | None = None) -> Outcome:
    """A new instance of `flavor` (id or name): saved building/scheduling with the 'create'
    action under a new request id, then scheduled (only to `host` when given) and saved with
    its host and node, still scheduling (the host's build clears it); the Outcome's cast is
    build_and_run_instance to that host. No valid host: saved in ERROR with the fault, the
    Outcome carries the NoValidHost and no cast. `request_id` and `global_request_id` as for
    `act`."""
    record = find_flavor(session, flavor)
    context = _context(user_id, project_id, request_id, global_request_id)
    flavor_json = json.dumps({"vcpus": record.vcpus, "memory_mb": record.memory_mb,
                              "root_gb": record.root_gb, "ephemeral_gb": record.ephemeral_gb,
                              "swap": record.swap, "name": record.name,
                              "flavorid": record.flavorid})
    server = q.insert_server(
        session, uuid=str(uuidlib.uuid4()), display_name=name, vm_state=states.BUILDING,
        task_state=states.SCHEDULING, power_state=int(states.PowerState.NOSTATE),
        vcpus=record.vcpus, memory_mb=record.memory_mb, root_gb=record.root_gb,
        ephemeral_gb=record.ephemeral_gb, swap=record.swap, flavor=flavor_json,
        instance_type_id=record.id, image_ref=image_ref, user_id=user_id,
        project_id=project_id)
    actions.start_action(session, instance_uuid=server.uuid, action="create",
                         request_id=context.request_id, user_id=user_id, project_id=project_id)
    expected = {"vm_state": states.BUILDING, "task_state": states.SCHEDULING}
    request = Request(record.vcpus, record.memory_mb, record.root_gb, record.ephemeral_gb,
                      record.swap)
    try:
        chosen = schedule(session, request, service_down_time, host=host, rng=rng)
    except e.NoValidHost as exc:
        server = _save(session, server, expected, {"vm_state": states.ERROR,
                                                   "task_state": None})
        actions.add_fault(session, instance_uuid=server.uuid, code=FAULT_NO_VALID_HOST,
                          message=str(exc), host=None)
        return Outcome(server, context.request_id, no_valid_host=exc)
    server = _save(session, server, expected, {"host": chosen.host, "node": chosen.node})
    cast = Cast(chosen.host, "build_and_run_instance", context, {
        "instance": instance_object(server), "image": {"id": image_ref},
        "request_spec": None, "filter_properties": {}, "admin_password": None,
        "injected_files": [], "requested_networks": None, "security_groups": None,
        "block_device_mapping": None, "node": chosen.node, "limits": {}, "host_list": []})
    return Outcome(server, context.request_id, cast, host_state=chosen)


def act(session: Session, key: str, action: str, *, service_down_time: float,
        user_id: str | None = None, project_id: str | None = None,
        request_id: str | None = None, global_request_id: str | None = None) -> Outcome:
    """One of server_rules.RULES ('stop', 'start', 'reboot', 'reboot-hard', 'pause',
    'unpause', 'delete') on the instance `key`: refused with InstanceInvalidState in a state
    nova refuses it in, and with InstanceNotReady when it needs the instance's host and there
    is none (server_rules.check_host); else the task_state saved (conditional on host and
    states read), the action recorded under `request_id` (the caller's ``req-<uuid>``; a new
    one when None), and the Outcome's cast to the instance's host, its context carrying
    `global_request_id` (the id an API caller sent, as nova's context does).

    A delete follows server_rules.delete_path, the host judged up or down on the database
    clock with `service_down_time` (seconds): without a host, or with its host down or gone,
    the instance is deleted here (nova's local delete: vm_state deleted, the row
    soft-deleted, no cast; the host's agent destroys the guest when it is back, see
    agent.compute.reaper); an instance already deleting on a host that is up is left alone
    (Outcome.delete_path 'ignored', nothing recorded)."""
    rule = RULES[action]
    server = find_server(session, key)
    check_state(rule, server.uuid, server.vm_state, server.task_state)
    check_host(rule, server.uuid, server.host)
    context = _context(user_id, project_id, request_id, global_request_id)
    path = None
    if rule.action == "delete":
        path = delete_path(server.host, _host_is_up(session, server.host, service_down_time),
                           server.task_state)
        if path == DELETE_IGNORED:
            return Outcome(server, context.request_id, delete_path=path)
    actions.start_action(session, instance_uuid=server.uuid, action=rule.action,
                         request_id=context.request_id, user_id=user_id, project_id=project_id)
    expected = {"vm_state": server.vm_state, "task_state": server.task_state}
    if path == DELETE_LOCAL:
        server = _save(session, server, expected, {
            "vm_state": states.DELETED, "task_state": None, "terminated_at": utcnow()},
            delete=True)
        return Outcome(server, context.request_id, delete_path=path)
    server = _save(session, server, expected, {"task_state": rule.task_state})
    args: dict[str, Any] = {"instance": instance_object(server)}
    if rule.method == "reboot_instance":
        args.update(block_device_info=None,
                    reboot_type="HARD" if action == "reboot-hard" else "SOFT")
    elif rule.method == "stop_instance":
        args["clean_shutdown"] = True
    elif rule.method == "terminate_instance":
        args["bdms"] = []
    return Outcome(server, context.request_id, Cast(server.host, rule.method, context, args),
                   delete_path=path)


def _host_is_up(session: Session, host: str | None, service_down_time: float) -> bool | None:
    """Whether `host`'s compute service is up on the database clock; None when there is no
    host or no live compute service for it."""
    if not host:
        return None
    db_now, found = list_services(session, host, COMPUTE_BINARY)
    if not found or db_now is None:
        return None
    return state_of(found[0], db_now, service_down_time).up
