"""The filter scheduler: which compute node takes a new instance. Pure functions over HostState
values (built by agent.control.placement from the services and compute_nodes rows and the
database clock); nothing here reads or writes.

Follows nova's FilterScheduler with its classic filters (before placement took their place):
- ComputeFilter: the service is enabled and up (not forced down, last beat within
  service_down_time on the database's clock: agent.liveness).
- CoreFilter: vcpus * cpu_allocation_ratio - vcpus_used >= the flavor's vcpus, and the flavor
  asks for no more vCPUs than the node has (an instance does not overcommit against itself).
- RamFilter: memory_mb * ram_allocation_ratio - (memory_mb - free_ram_mb) >= the flavor's
  memory_mb (MiB). free_ram_mb is the resource tracker's: reserved_host_memory_mb is already
  counted as used.
- DiskFilter: local_gb * 1024 * disk_allocation_ratio - (local_gb * 1024 - free_disk_mb) >=
  (root_gb + ephemeral_gb) * 1024 + swap (MiB), free_disk_mb from disk_available_least when
  the node reports it, else free_disk_gb (as nova's HostState).
Then the RAMWeigher: most free_ram_mb first; among equally weighed nodes one at random (nova's
shuffle_best_same_weighed_hosts), from an injectable random.Random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from agent.control.errors import NoValidHost
from agent.display import plural


@dataclass(frozen=True)
class HostState:
    """One compute node as the scheduler sees it: sizes in nova's units (vcpus, memory MiB,
    disk GiB), ratios as stored on the node row. `down_reason`: liveness's words when the
    service is down, None when up."""
    host: str
    node: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    down_reason: str | None
    vcpus: int
    vcpus_used: int
    memory_mb: int
    free_ram_mb: int
    local_gb: int
    free_disk_gb: int
    disk_available_least: int | None
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float


@dataclass(frozen=True)
class Request:
    """What the flavor asks for: vcpus, memory_mb and swap in MiB, root_gb and ephemeral_gb in
    GiB."""
    vcpus: int
    memory_mb: int
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap: int = 0

    @property
    def disk_mb(self) -> int:
        return (self.root_gb + self.ephemeral_gb) * 1024 + self.swap


def compute_filter(h: HostState, r: Request) -> str | None:
    if h.disabled:
        return "service disabled" + (f" ({h.disabled_reason})" if h.disabled_reason else "")
    if h.forced_down:
        return "service forced down"
    if h.down_reason is not None:
        return f"service down ({h.down_reason})"
    return None


def core_filter(h: HostState, r: Request) -> str | None:
    if r.vcpus > h.vcpus:
        return f"{plural(r.vcpus, 'vCPU')} requested, the node has {h.vcpus}"
    free = h.vcpus * h.cpu_allocation_ratio - h.vcpus_used
    if free < r.vcpus:
        return (f"{plural(r.vcpus, 'vCPU')} requested, {_num(free)} free ({h.vcpus_used} of "
                f"{h.vcpus} x {h.cpu_allocation_ratio:g} used)")
    return None


def ram_filter(h: HostState, r: Request) -> str | None:
    usable = h.memory_mb * h.ram_allocation_ratio - (h.memory_mb - h.free_ram_mb)
    if usable < r.memory_mb:
        return (f"{r.memory_mb} MiB RAM requested, {_num(usable)} MiB usable (free "
                f"{h.free_ram_mb} of {h.memory_mb} MiB x {h.ram_allocation_ratio:g})")
    return None


def free_disk_mb(h: HostState) -> int:
    least = h.disk_available_least
    return (least if least is not None else h.free_disk_gb) * 1024


def disk_filter(h: HostState, r: Request) -> str | None:
    total_mb = h.local_gb * 1024
    usable = total_mb * h.disk_allocation_ratio - (total_mb - free_disk_mb(h))
    if usable < r.disk_mb:
        return (f"{r.disk_mb} MiB disk requested, {_num(usable)} MiB usable (free "
                f"{free_disk_mb(h)} of {total_mb} MiB x {h.disk_allocation_ratio:g})")
    return None


def _num(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


FILTERS: tuple[tuple[str, Callable[[HostState, Request], str | None]], ...] = (
    ("ComputeFilter", compute_filter), ("CoreFilter", core_filter),
    ("RamFilter", ram_filter), ("DiskFilter", disk_filter))


def first_failure(h: HostState, r: Request) -> tuple[str, str] | None:
    """(filter name, reason) of the first filter that refuses the node, or None."""
    for name, check in FILTERS:
        reason = check(h, r)
        if reason is not None:
            return name, reason
    return None


def weigh(hosts: Sequence[HostState], rng: random.Random) -> HostState:
    """The RAMWeigher's choice: the node with the most free_ram_mb, a tie broken by `rng`."""
    best = max(h.free_ram_mb for h in hosts)
    return rng.choice([h for h in hosts if h.free_ram_mb == best])


def select_destination(hosts: Sequence[HostState], r: Request, rng: random.Random,
                       requested_host: str | None = None) -> HostState:
    """The node that takes the instance: those of `requested_host` only when given, each
    passed through FILTERS, then weighed. NoValidHost lists every node's failure (and says
    when there was no node at all)."""
    if requested_host is not None:
        hosts = [h for h in hosts if h.host == requested_host]
    failures, passed = [], []
    for h in hosts:
        failure = first_failure(h, r)
        if failure is None:
            passed.append(h)
        else:
            failures.append((h.host, h.node, *failure))
    if not passed:
        raise NoValidHost(failures, requested_host)
    return weigh(passed, rng)
