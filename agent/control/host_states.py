"""What the scheduler decides on, read from the database: the compute services with their
liveness on the database clock (agent.liveness) and their nodes' sizes and usage, as
agent.control.scheduler.HostState values; and the choice itself with its claim (`schedule`).

Usage is claimed at scheduling time, as nova's scheduler does through placement allocations:
a node's usage is its reserved host resources (as its last audit saved them) plus the flavors
of every live instance the database gives it now, the ones still building included, so two
creates in quick succession do not both take the room of one. The audit counts the same
instances with the same reserve (agent.compute.usage), so nothing is counted twice; its own
*_used figures are only a floor until a node has been audited with its reserve saved.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Sequence

from sqlalchemy.orm import Session

from agent.control.errors import NoValidHost
from agent.control.scheduler import HostState, Request, first_failure, select_destination
from agent.db.node_queries import Claims, load_claims, load_node_resources, lock_node
from agent.db.records import NodeRecord
from agent.db.service_queries import ServiceRecord, list_services
from agent.liveness import state_of
from agent.vocabulary import COMPUTE_BINARY

# A node row written before its first audit has no ratios yet: no overcommit is assumed.
UNSET_RATIO = 1.0


def node_claims(node: NodeRecord, claims: Sequence[Claims], only_node: bool) -> Claims:
    """What the instances of `node` hold: those given this node, and those not yet given a
    node when it is its host's only one (as the resource tracker counts them)."""
    mine = [c for c in claims if c.host == node.host and (
        c.node == node.hypervisor_hostname or (c.node is None and only_node))]
    return Claims(node.host, node.hypervisor_hostname, sum(c.vcpus for c in mine),
                  sum(c.memory_mb for c in mine), sum(c.disk_gb for c in mine),
                  sum(c.swap_mb for c in mine))


def node_fields(node: NodeRecord, claims: Claims | None = None) -> dict[str, object]:
    """The HostState fields of `node`: sizes, ratios and usage. With `claims`, usage is the
    node's reserve plus the claims (a node not yet audited with its reserve: the larger of its
    audited usage and the claims), and the free disk is also capped by the hypervisor's
    disk_available_least; without, usage as last audited."""
    def ratio(value: float | None) -> float:
        return UNSET_RATIO if value is None else value

    vcpus_used = node.vcpus_used
    free_ram_mb = node.memory_mb if node.free_ram_mb is None else node.free_ram_mb
    free_disk_gb = node.local_gb if node.free_disk_gb is None else node.free_disk_gb
    least = node.disk_available_least
    if claims is not None:
        disk_gb = claims.disk_gb + claims.swap_mb / 1024
        reserve = (node.reserved_host_cpus, node.reserved_host_memory_mb,
                   node.reserved_host_disk_mb)
        if None not in reserve:
            cpus, memory_mb, disk_mb = reserve
            vcpus_used = cpus + claims.vcpus
            free_ram_mb = node.memory_mb - memory_mb - claims.memory_mb
            free_disk_gb = int(node.local_gb - disk_mb / 1024 - disk_gb)
        else:
            vcpus_used = max(vcpus_used, claims.vcpus)
            free_ram_mb = min(free_ram_mb, node.memory_mb - claims.memory_mb)
            free_disk_gb = min(free_disk_gb, int(node.local_gb - disk_gb))
        if least is not None:
            least = min(least, free_disk_gb)
    return dict(node=node.hypervisor_hostname, vcpus=node.vcpus, vcpus_used=vcpus_used,
                memory_mb=node.memory_mb, free_ram_mb=free_ram_mb, local_gb=node.local_gb,
                free_disk_gb=free_disk_gb, disk_available_least=least,
                cpu_allocation_ratio=ratio(node.cpu_allocation_ratio),
                ram_allocation_ratio=ratio(node.ram_allocation_ratio),
                disk_allocation_ratio=ratio(node.disk_allocation_ratio))


def host_state(service: ServiceRecord, node: NodeRecord, down_reason: str | None,
               claims: Claims | None = None) -> HostState:
    """The node as the filters see it (`node_fields`), with its service's state."""
    return HostState(host=service.host, disabled=service.disabled,
                     disabled_reason=service.disabled_reason, forced_down=service.forced_down,
                     down_reason=down_reason, **node_fields(node, claims))


def load_host_states(session: Session, service_down_time: float, host: str | None = None
                     ) -> tuple[list[HostState], list[str]]:
    """Three SELECTs: the compute nodes of every live compute service (of `host` only, when
    given) as HostState with their claims, and the hosts whose service has no node yet."""
    db_now, services = list_services(session, host, COMPUTE_BINARY)
    nodes = load_node_resources(session, {s.host for s in services})
    by_host: dict[str, list[NodeRecord]] = {}
    for node in nodes:
        by_host.setdefault(node.host, []).append(node)
    claims = load_claims(session, list(by_host))
    states, nodeless = [], []
    for service in services:
        if service.host not in by_host:
            nodeless.append(service.host)
            continue
        verdict = state_of(service, db_now, service_down_time)
        down = None if verdict.up else (verdict.reason or "down")
        mine = by_host[service.host]
        states += [host_state(service, node, down, node_claims(node, claims, len(mine) == 1))
                   for node in mine]
    return states, nodeless


def claim(session: Session, chosen: HostState, only_node: bool) -> HostState | None:
    """`chosen` as it is once its node row is locked (`lock_node`) and its claims read again
    with what committed meanwhile; None when the node is gone. The lock is held until the
    caller's transaction ends, so the instance the caller then gives this node is counted by
    every later create (a lock row per node: creates on other nodes do not wait). The
    service's liveness is kept as read: the lock is about usage."""
    node = lock_node(session, chosen.host, chosen.node)
    if node is None:
        return None
    claims = node_claims(node, load_claims(session, [chosen.host], fresh=True), only_node)
    return replace(chosen, **node_fields(node, claims))


def schedule(session: Session, request: Request, service_down_time: float, *,
             host: str | None = None, rng: random.Random | None = None) -> HostState:
    """The node that takes an instance of `request` (only nodes of `host`, when given); see
    agent.control.scheduler. The chosen node is then claimed (`claim`): locked, its usage read
    again and the filters run again; a node another create filled meanwhile is refused with
    the filter that now fails and the next best is tried. The caller gives the instance its
    host and node in the same transaction. NoValidHost names each node's failure, and each
    host whose service has no compute node yet.

    Each node claimed stays locked until the caller's transaction ends. Two creates that both
    find their first node filled meanwhile and then want each other's could wait on each
    other; PostgreSQL and MariaDB then end one of them with a deadlock error (nothing saved,
    the request can be sent again). nova's placement answers the same race with a
    generation conflict and a retry."""
    states, nodeless = load_host_states(session, service_down_time, host)
    per_host: dict[str, int] = {}
    for h in states:
        per_host[h.host] = per_host.get(h.host, 0) + 1
    rng = rng or random.Random()
    refused: list[tuple[str, str, str, str]] = []
    while True:
        try:
            chosen = select_destination(states, request, rng, host)
        except NoValidHost as exc:
            failures = (tuple(refused) + exc.failures
                        + tuple((name, "-", "ComputeFilter", "no compute node yet")
                                for name in nodeless))
            raise NoValidHost(failures, host) from None
        states = [h for h in states if h is not chosen]
        fresh = claim(session, chosen, per_host[chosen.host] == 1)
        if fresh is None:
            refused.append((chosen.host, chosen.node, "ComputeFilter", "compute node deleted"))
            continue
        failure = first_failure(fresh, request)
        if failure is None:
            return fresh
        refused.append((chosen.host, chosen.node, *failure))
