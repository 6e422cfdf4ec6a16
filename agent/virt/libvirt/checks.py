"""Start-up checks of the libvirt driver, as pure functions: version floors, quality warnings,
and the translation of libvirt's domain states into nova's power states.

The host object reads the facts (versions, arch, hypervisor type); these functions decide. They
return warning strings (the driver logs them and reports them in `get_driver_info().warnings`)
or raise `HypervisorVersionError` with one line naming what was found and what is required.
"""

from __future__ import annotations

from typing import Sequence

from agent.errors import HypervisorVersionError
from agent.virt.types import PowerState

Version = tuple[int, int, int]

# Oldest versions the agent runs on; below them start-up stops.
MIN_LIBVIRT_VERSION: Version = (8, 0, 0)
MIN_QEMU_VERSION: Version = (6, 2, 0)
# The floors the next release will require; below them start-up warns so operators can plan.
NEXT_MIN_LIBVIRT_VERSION: Version = (10, 0, 0)
NEXT_MIN_QEMU_VERSION: Version = (8, 2, 2)

TESTED_VIRT_TYPES = ("qemu", "kvm")
TESTED_ARCHES = ("i686", "x86_64")
# Hypervisor types (virConnectGetType) whose version is QEMU's.
QEMU_HYPERVISOR_TYPES = ("QEMU",)

# libvirt's virDomainState values -> nova's power states.
_DOMAIN_STATE_POWER = {
    0: PowerState.NOSTATE,     # VIR_DOMAIN_NOSTATE
    1: PowerState.RUNNING,     # VIR_DOMAIN_RUNNING
    2: PowerState.RUNNING,     # VIR_DOMAIN_BLOCKED: running, waiting on a resource
    3: PowerState.PAUSED,      # VIR_DOMAIN_PAUSED
    4: PowerState.SHUTDOWN,    # VIR_DOMAIN_SHUTDOWN: being shut down
    5: PowerState.SHUTDOWN,    # VIR_DOMAIN_SHUTOFF
    6: PowerState.CRASHED,     # VIR_DOMAIN_CRASHED
    7: PowerState.SUSPENDED,   # VIR_DOMAIN_PMSUSPENDED
}


def version_from_int(number: int) -> Version:
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + micro."""
    return (number // 1_000_000, (number // 1_000) % 1_000, number % 1_000)


def version_to_int(version: Version) -> int:
    major, minor, micro = version
    return major * 1_000_000 + minor * 1_000 + micro


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def power_state_from_domain_state(state: int) -> PowerState:
    """nova's power state for a libvirt domain state; an unknown state is NOSTATE."""
    return _DOMAIN_STATE_POWER.get(state, PowerState.NOSTATE)


def quality_warnings(virt_type: str, host_arch: str) -> list[str]:
    """Warnings for setups outside what is tested: a virt_type other than qemu/kvm, a host
    architecture other than i686/x86_64. Each is its own warning."""
    warnings = []
    if virt_type not in TESTED_VIRT_TYPES:
        warnings.append(f"virt_type '{virt_type}' is not tested (tested: "
                        f"{', '.join(TESTED_VIRT_TYPES)}); quality cannot be ensured")
    if host_arch not in TESTED_ARCHES:
        warnings.append(f"host architecture '{host_arch}' is not tested (tested: "
                        f"{', '.join(TESTED_ARCHES)}); quality cannot be ensured")
    return warnings


def lxc_warnings(virt_type: str, uid_maps: Sequence[str], gid_maps: Sequence[str]) -> list[str]:
    """lxc without both uid and gid maps runs containers without a user namespace."""
    if virt_type == "lxc" and not (uid_maps and gid_maps):
        return ["virt_type 'lxc' without both [libvirt] uid_maps and gid_maps: containers run "
                "as root on the host (no user namespace)"]
    return []


def version_warnings(libvirt_version: Version, hypervisor_type: str,
                     hypervisor_version: Version) -> list[str]:
    """Raise `HypervisorVersionError` below the floors; return warnings below the next floors.

    The QEMU floors apply only when the hypervisor is QEMU (kvm and qemu virt types)."""
    is_qemu = hypervisor_type in QEMU_HYPERVISOR_TYPES
    too_old = []
    if libvirt_version < MIN_LIBVIRT_VERSION:
        too_old.append(f"libvirt {format_version(libvirt_version)} (requires "
                       f"{format_version(MIN_LIBVIRT_VERSION)} or newer)")
    if is_qemu and hypervisor_version < MIN_QEMU_VERSION:
        too_old.append(f"QEMU {format_version(hypervisor_version)} (requires "
                       f"{format_version(MIN_QEMU_VERSION)} or newer)")
    if too_old:
        raise HypervisorVersionError("hypervisor too old: found " + " and ".join(too_old))
    warnings = []
    if libvirt_version < NEXT_MIN_LIBVIRT_VERSION:
        warnings.append(f"libvirt {format_version(libvirt_version)} is older than "
                        f"{format_version(NEXT_MIN_LIBVIRT_VERSION)}, which the next release "
                        "will require")
    if is_qemu and hypervisor_version < NEXT_MIN_QEMU_VERSION:
        warnings.append(f"QEMU {format_version(hypervisor_version)} is older than "
                        f"{format_version(NEXT_MIN_QEMU_VERSION)}, which the next release "
                        "will require")
    return warnings


def init_host_warnings(*, virt_type: str, host_arch: str, uid_maps: Sequence[str],
                       gid_maps: Sequence[str], libvirt_version: Version, hypervisor_type: str,
                       hypervisor_version: Version) -> list[str]:
    """Every start-up finding, in the order they are checked; raises below a version floor."""
    return (quality_warnings(virt_type, host_arch)
            + lxc_warnings(virt_type, uid_maps, gid_maps)
            + version_warnings(libvirt_version, hypervisor_type, hypervisor_version))
