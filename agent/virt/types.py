"""Value types that cross the driver interface: frozen dataclasses, never dicts.

Power-state integers (defined in agent.vocabulary) and lifecycle transitions are nova's, so the
database and operators see the numbers they know.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Mapping

# Power states cross the driver interface; their home is the shared vocabulary.
from agent.vocabulary import ACTIVE_POWER_STATES, PowerState  # noqa: F401


class Transition(enum.Enum):
    """A guest lifecycle transition reported by the hypervisor."""

    STARTED = "started"
    STOPPED = "stopped"
    PAUSED = "paused"
    RESUMED = "resumed"
    SUSPENDED = "suspended"
    POSTCOPY_STARTED = "postcopy-started"
    MIGRATION_COMPLETED = "migration-completed"

    @property
    def power_state(self) -> PowerState:
        """The power state a guest is in after this transition (nova's mapping)."""
        return _TRANSITION_POWER[self]


_TRANSITION_POWER = {
    Transition.STARTED: PowerState.RUNNING,
    Transition.RESUMED: PowerState.RUNNING,
    Transition.STOPPED: PowerState.SHUTDOWN,
    Transition.PAUSED: PowerState.PAUSED,
    Transition.POSTCOPY_STARTED: PowerState.PAUSED,
    Transition.MIGRATION_COMPLETED: PowerState.PAUSED,
    Transition.SUSPENDED: PowerState.SUSPENDED,
}


class RebootType(enum.Enum):
    SOFT = "SOFT"
    HARD = "HARD"


@dataclass(frozen=True)
class InstanceRef:
    """How the manager names a guest to the driver: the instance uuid (the domain's uuid) and
    its name (the domain's name)."""

    uuid: str
    name: str


@dataclass(frozen=True)
class FixedIP:
    address: str
    version: int  # 4 or 6


@dataclass(frozen=True)
class SecurityGroupRule:
    """Allow inbound traffic: protocol tcp/udp/icmp (or None for all), a port range for tcp/udp,
    and a source prefix (None: anywhere)."""

    protocol: str | None
    port_min: int | None = None
    port_max: int | None = None
    source_cidr: str | None = None
    ethertype: int = 4  # 4 or 6


@dataclass(frozen=True)
class VIF:
    """One virtual interface of an instance, as stored in `instances.network_info`."""

    id: str
    address: str  # MAC
    fixed_ips: tuple[FixedIP, ...] = ()
    rules: tuple[SecurityGroupRule, ...] = ()
    devname: str | None = None


@dataclass(frozen=True)
class Flavor:
    """The sizes of an instance's flavor (nova's flavor fields; swap in MiB, disks in GiB): what
    the resource figures count and what `ComputeDriver.spawn` gives the guest."""

    vcpus: int = 0
    memory_mb: int = 0
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap: int = 0  # MiB

    @classmethod
    def from_json(cls, text: str | None) -> "Flavor | None":
        """A flavor stored as JSON in instances.old_flavor/new_flavor; None when absent or
        unreadable (the instance's current flavor is used instead)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**{k: int(data.get(k) or 0) for k in
                          ("vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap")})
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class InstanceInfo:
    """A guest as the hypervisor sees it."""

    uuid: str
    name: str
    power_state: PowerState
    vcpus: int
    memory_mb: int
    disk_gb: int = 0


@dataclass(frozen=True)
class HostResources:
    """What `get_available_resource` reports for one node (nova's compute-node field names).

    The *_used values are the hypervisor's own view; the resource tracker logs them and computes
    usage from the database instead, as nova does.
    """

    hypervisor_hostname: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    hypervisor_type: str
    hypervisor_version: int
    cpu_info: str  # JSON: arch, model, vendor, topology, features
    disk_available_least: int | None = None
    stats: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverInfo:
    """Who the driver is, for the inventory and the logs."""

    name: str
    hypervisor_type: str
    hypervisor_version: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capabilities:
    supports_evacuate: bool = True
    supports_events: bool = True


@dataclass(frozen=True)
class LifecycleEvent:
    instance_uuid: str
    transition: Transition
    timestamp: float  # time.time() when the hypervisor reported it
