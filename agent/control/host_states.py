"""What the scheduler decides on, read from the database: the compute services with their
liveness on the database clock (agent.liveness) and their nodes' usage, as
agent.control.scheduler.HostState values; and the choice itself (`schedule`)."""

from __future__ import annotations

import random

from sqlalchemy.orm import Session

from agent.control.errors import NoValidHost
from agent.control.scheduler import HostState, Request, select_destination
from agent.db.node_queries import load_node_resources
from agent.db.records import NodeRecord
from agent.db.service_queries import ServiceRecord, list_services
from agent.liveness import state_of
from agent.vocabulary import COMPUTE_BINARY

# A node row written before its first audit has no ratios yet: no overcommit is assumed.
UNSET_RATIO = 1.0


def host_state(service: ServiceRecord, node: NodeRecord, down_reason: str | None
               ) -> HostState:
    def ratio(value: float | None) -> float:
        return UNSET_RATIO if value is None else value

    return HostState(
        host=service.host, node=node.hypervisor_hostname, disabled=service.disabled,
        disabled_reason=service.disabled_reason, forced_down=service.forced_down,
        down_reason=down_reason, vcpus=node.vcpus, vcpus_used=node.vcpus_used,
        memory_mb=node.memory_mb,
        free_ram_mb=node.memory_mb if node.free_ram_mb is None else node.free_ram_mb,
        local_gb=node.local_gb,
        free_disk_gb=node.local_gb if node.free_disk_gb is None else node.free_disk_gb,
        disk_available_least=node.disk_available_least,
        cpu_allocation_ratio=ratio(node.cpu_allocation_ratio),
        ram_allocation_ratio=ratio(node.ram_allocation_ratio),
        disk_allocation_ratio=ratio(node.disk_allocation_ratio))


def load_host_states(session: Session, service_down_time: float, host: str | None = None
                     ) -> tuple[list[HostState], list[str]]:
    """Two SELECTs: the compute nodes of every live compute service (of `host` only, when
    given) as HostState, and the hosts whose service has no node yet."""
    db_now, services = list_services(session, host, COMPUTE_BINARY)
    nodes = load_node_resources(session, {s.host for s in services})
    by_host: dict[str, list[NodeRecord]] = {}
    for node in nodes:
        by_host.setdefault(node.host, []).append(node)
    states, nodeless = [], []
    for service in services:
        if service.host not in by_host:
            nodeless.append(service.host)
            continue
        verdict = state_of(service, db_now, service_down_time)
        down = None if verdict.up else (verdict.reason or "down")
        states += [host_state(service, node, down) for node in by_host[service.host]]
    return states, nodeless


def schedule(session: Session, request: Request, service_down_time: float, *,
             host: str | None = None, rng: random.Random | None = None) -> HostState:
    """The node that takes an instance of `request` (only nodes of `host`, when given); see
    agent.control.scheduler. NoValidHost names each node's failure, and each host whose
    service has no compute node yet."""
    states, nodeless = load_host_states(session, service_down_time, host)
    try:
        return select_destination(states, request, rng or random.Random(), host)
    except NoValidHost as exc:
        failures = exc.failures + tuple((name, "-", "ComputeFilter", "no compute node yet")
                                        for name in nodeless)
        raise NoValidHost(failures, host) from None
