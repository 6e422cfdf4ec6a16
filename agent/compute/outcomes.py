"""What start-up reports of this host's instances and guests (shown by the inventory)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.compute.evacuation import EvacuationOutcome


@dataclass(frozen=True)
class InstanceOutcome:
    """One instance after start-up, as the inventory shows it."""

    uuid: str
    name: str
    vm_state: str | None
    task_state: str | None
    power_state: int | None
    action: str
    error: str | None = None


@dataclass(frozen=True)
class UnknownDomain:
    """A guest on the hypervisor that no live instance row knows."""

    uuid: str
    name: str
    power_state: int


@dataclass(frozen=True)
class InitHostResult:
    instances: tuple[InstanceOutcome, ...]
    evacuated: tuple[EvacuationOutcome, ...]
    unknown_domains: tuple[UnknownDomain, ...]
