"""Start-up decisions of the libvirt driver: version floors, quality warnings, power states."""

from __future__ import annotations

import pytest

from agent.errors import HypervisorVersionError
from agent.virt.libvirt import checks
from agent.virt.types import PowerState


@pytest.mark.parametrize("number, version", [
    (9000000, (9, 0, 0)),
    (7002022, (7, 2, 22)),
    (8002000, (8, 2, 0)),
    (10000001, (10, 0, 1)),
    (2, (0, 0, 2)),
], ids=["libvirt-9.0.0", "qemu-7.2.22", "qemu-8.2.0", "libvirt-10.0.1", "test-hv-2"])
def test_version_from_int_decodes_libvirt_encoding(number, version):
    assert checks.version_from_int(number) == version
    assert checks.version_to_int(version) == number


@pytest.mark.parametrize("libvirt_version, hv_type, qemu_version, expected", [
    ((10, 0, 0), "QEMU", (8, 2, 2), []),
    ((9, 0, 0), "QEMU", (8, 2, 2), ["libvirt 9.0.0 is older than 10.0.0"]),
    ((10, 1, 0), "QEMU", (7, 2, 22), ["QEMU 7.2.22 is older than 8.2.2"]),
    ((9, 0, 0), "QEMU", (7, 2, 22), ["libvirt 9.0.0 is older than 10.0.0",
                                      "QEMU 7.2.22 is older than 8.2.2"]),
    ((8, 0, 0), "QEMU", (6, 2, 0), ["libvirt 8.0.0 is older than 10.0.0",
                                     "QEMU 6.2.0 is older than 8.2.2"]),
    ((10, 0, 0), "TEST", (0, 0, 2), []),
    ((9, 0, 0), "LXC", (9, 0, 0), ["libvirt 9.0.0 is older than 10.0.0"]),
], ids=["at-next-floors", "libvirt-below-next", "qemu-below-next", "both-below-next",
        "exactly-at-floors", "test-hv-skips-qemu", "lxc-skips-qemu"])
def test_version_warnings_below_next_floor(libvirt_version, hv_type, qemu_version, expected):
    warnings = checks.version_warnings(libvirt_version, hv_type, qemu_version)
    assert len(warnings) == len(expected)
    for warning, start in zip(warnings, expected):
        assert warning.startswith(start)
        assert "next release" in warning


@pytest.mark.parametrize("libvirt_version, hv_type, qemu_version, named", [
    ((7, 10, 0), "QEMU", (8, 2, 2), ["libvirt 7.10.0 (requires 8.0.0 or newer)"]),
    ((9, 0, 0), "QEMU", (6, 1, 9), ["QEMU 6.1.9 (requires 6.2.0 or newer)"]),
    ((6, 0, 0), "QEMU", (4, 2, 0), ["libvirt 6.0.0 (requires 8.0.0 or newer)",
                                     "QEMU 4.2.0 (requires 6.2.0 or newer)"]),
    ((7, 0, 0), "TEST", (0, 0, 2), ["libvirt 7.0.0 (requires 8.0.0 or newer)"]),
], ids=["libvirt-below-floor", "qemu-below-floor", "both-below-floor", "test-hv-old-libvirt"])
def test_version_below_floor_raises_one_line_naming_found_and_required(
        libvirt_version, hv_type, qemu_version, named):
    with pytest.raises(HypervisorVersionError) as excinfo:
        checks.version_warnings(libvirt_version, hv_type, qemu_version)
    message = str(excinfo.value)
    assert "\n" not in message
    for part in named:
        assert part in message


def test_old_qemu_is_ignored_when_hypervisor_is_not_qemu():
    assert checks.version_warnings((10, 0, 0), "TEST", (0, 0, 1)) == []


@pytest.mark.parametrize("virt_type, arch, count, mentions", [
    ("kvm", "x86_64", 0, []),
    ("qemu", "i686", 0, []),
    ("lxc", "x86_64", 1, ["virt_type 'lxc'"]),
    ("kvm", "aarch64", 1, ["architecture 'aarch64'"]),
    ("parallels", "ppc64le", 2, ["virt_type 'parallels'", "architecture 'ppc64le'"]),
], ids=["kvm-x86_64", "qemu-i686", "lxc", "aarch64", "parallels-ppc64le"])
def test_quality_warnings(virt_type, arch, count, mentions):
    warnings = checks.quality_warnings(virt_type, arch)
    assert len(warnings) == count
    for warning, mention in zip(warnings, mentions):
        assert mention in warning
        assert "quality cannot be ensured" in warning


@pytest.mark.parametrize("virt_type, uid_maps, gid_maps, warned", [
    ("lxc", [], [], True),
    ("lxc", ["0:1000:100"], [], True),
    ("lxc", [], ["0:1000:100"], True),
    ("lxc", ["0:1000:100"], ["0:1000:100"], False),
    ("kvm", [], [], False),
], ids=["lxc-no-maps", "lxc-uid-only", "lxc-gid-only", "lxc-both-maps", "kvm"])
def test_lxc_without_user_namespace_maps_warns_about_host_root(virt_type, uid_maps, gid_maps,
                                                               warned):
    warnings = checks.lxc_warnings(virt_type, uid_maps, gid_maps)
    assert bool(warnings) is warned
    if warned:
        assert "root on the host" in warnings[0]


def test_init_host_warnings_combines_every_finding_in_order():
    warnings = checks.init_host_warnings(
        virt_type="lxc", host_arch="aarch64", uid_maps=[], gid_maps=[],
        libvirt_version=(9, 0, 0), hypervisor_type="LXC", hypervisor_version=(9, 0, 0))
    assert [w.split()[0:2] for w in warnings] == [
        ["virt_type", "'lxc'"], ["host", "architecture"], ["virt_type", "'lxc'"],
        ["libvirt", "9.0.0"]]


@pytest.mark.parametrize("state, power", [
    (0, PowerState.NOSTATE), (1, PowerState.RUNNING), (2, PowerState.RUNNING),
    (3, PowerState.PAUSED), (4, PowerState.SHUTDOWN), (5, PowerState.SHUTDOWN),
    (6, PowerState.CRASHED), (7, PowerState.SUSPENDED), (99, PowerState.NOSTATE),
], ids=["nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed",
        "pmsuspended", "unknown"])
def test_power_state_from_domain_state(state, power):
    assert checks.power_state_from_domain_state(state) == power
