"""LibvirtDriver against libvirt's own test hypervisor: test:///default and a generated
test:///<tmp>/node.xml with 1,000 domains in mixed states. No daemon is needed; the driver runs
its real event loop, callbacks and libvirt calls."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

import pytest

from agent.config import load_config
from agent.errors import DriverError, HypervisorVersionError, InstanceNotFound
from agent.virt.libvirt.driver import LibvirtDriver
from agent.virt.libvirt.host import Host
from agent.virt.types import InstanceRef, PowerState, RebootType, Transition
from tests.conftest import import_libvirt
from tests.libvirt_xml import write_node

libvirt = import_libvirt()

DEADLINE_S = 30.0
NEXT_FLOOR_WARNING = "libvirt 9.0.0 is older than 10.0.0, which the next release will require"


def make_conf(tmp_path, uri, **libvirt_options):
    config = tmp_path / "agent.conf"
    config.write_text("[DEFAULT]\n")
    overrides = {("DEFAULT", "state_path"): str(tmp_path / "state"),
                 ("libvirt", "connection_uri"): uri}
    for name, value in libvirt_options.items():
        overrides[("libvirt", name)] = value
    return load_config(str(config), overrides)


class ManualTimers:
    """Timer factory for held STOPPED events: the test decides when 15 s have passed."""

    def __init__(self):
        self.timers = []

    def __call__(self, delay, function):
        timer = _ManualTimer(delay, function)
        self.timers.append(timer)
        return timer

    def fire_all(self):
        for timer in list(self.timers):
            timer.fire()


class _ManualTimer:
    def __init__(self, delay, function):
        self.delay, self.function, self.cancelled = delay, function, False

    def start(self):
        pass

    def cancel(self):
        self.cancelled = True

    def fire(self):
        if not self.cancelled:
            self.function()


class VersionSeam:
    """A real connection whose reported versions are replaced: the fault that cannot be
    produced on this machine (an older libvirt or QEMU)."""

    def __init__(self, conn, lib_version=None, hv_type=None, hv_version=None):
        self._conn = conn
        self._overrides = {"getLibVersion": lib_version, "getType": hv_type,
                           "getVersion": hv_version}

    def __getattr__(self, name):
        value = self._overrides.get(name)
        if value is not None:
            return lambda: value
        return getattr(self._conn, name)


def wait_for(predicate, what):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def make_driver(tmp_path):
    drivers = []

    def make(uri, *, timers=None, open_connection=None, **libvirt_options):
        conf = make_conf(tmp_path, uri, **libvirt_options)
        host = Host(uri, timer_factory=timers, open_connection=open_connection)
        driver = LibvirtDriver(conf, host=host, shutdown_timeout=5, poll_interval=0.05)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.cleanup_host()


@pytest.fixture(scope="module")
def node_1000(tmp_path_factory):
    return write_node(tmp_path_factory.mktemp("node1000"), 1000)


@pytest.fixture
def small_node(tmp_path):
    return write_node(tmp_path, 9)


# -- init_host ---------------------------------------------------------------------------------
def test_init_host_on_test_default_warns_only_about_next_libvirt_floor(make_driver):
    driver = make_driver("test:///default")
    driver.init_host("compute-1")
    info = driver.get_driver_info()
    assert info.name == "libvirt"
    assert info.hypervisor_type == "TEST"
    assert info.warnings == (NEXT_FLOOR_WARNING,)


def test_init_host_logs_each_warning(make_driver, caplog):
    driver = make_driver("test:///default", virt_type="lxc")
    with caplog.at_level("WARNING"):
        driver.init_host("compute-1")
    warnings = driver.get_driver_info().warnings
    assert len(warnings) == 3  # untested virt_type, lxc without maps, next libvirt floor
    assert "virt_type 'lxc' is not tested" in warnings[0]
    assert "containers run as root on the host" in warnings[1]
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for warning in warnings:
        assert warning in logged


def test_init_host_on_1000_domain_node(make_driver, node_1000):
    driver = make_driver(node_1000.uri)
    driver.init_host("compute-1")
    assert driver.get_driver_info().warnings == (NEXT_FLOOR_WARNING,)


def test_init_host_refuses_libvirt_below_floor(make_driver):
    driver = make_driver("test:///default", open_connection=lambda uri: VersionSeam(
        libvirt.open(uri), lib_version=7_010_000))
    with pytest.raises(HypervisorVersionError) as excinfo:
        driver.init_host("compute-1")
    assert str(excinfo.value) == ("hypervisor too old: found libvirt 7.10.0 (requires 8.0.0 or "
                                  "newer)")


def test_init_host_refuses_qemu_below_floor(make_driver):
    driver = make_driver("test:///default", open_connection=lambda uri: VersionSeam(
        libvirt.open(uri), hv_type="QEMU", hv_version=6_001_000))
    with pytest.raises(HypervisorVersionError, match=r"QEMU 6\.1\.0 \(requires 6\.2\.0"):
        driver.init_host("compute-1")


def test_init_host_warns_for_qemu_below_next_floor(make_driver):
    driver = make_driver("test:///default", open_connection=lambda uri: VersionSeam(
        libvirt.open(uri), lib_version=10_000_000, hv_type="QEMU", hv_version=7_002_022))
    driver.init_host("compute-1")
    assert driver.get_driver_info().warnings == (
        "QEMU 7.2.22 is older than 8.2.2, which the next release will require",)


def test_init_host_unreachable_uri_is_a_driver_error(make_driver, tmp_path):
    driver = make_driver(f"test://{tmp_path}/missing.xml")
    with pytest.raises(DriverError, match="cannot connect to libvirt at test://"):
        driver.init_host("compute-1")


def test_libvirt_errors_do_not_reach_stderr(make_driver, capfd):
    driver = make_driver("test:///default")
    driver.init_host("compute-1")
    with pytest.raises(InstanceNotFound):
        driver.get_info(InstanceRef("00000000-0000-0000-0000-000000000000", "nope"))
    assert "libvirt" not in capfd.readouterr().err


# -- listing and reading -----------------------------------------------------------------------
def test_list_instances_returns_all_1000_with_their_states(make_driver, node_1000):
    driver = make_driver(node_1000.uri)
    driver.init_host("compute-1")
    listed = {(i.uuid, i.name, i.power_state, i.vcpus, i.memory_mb)
              for i in driver.list_instances()}
    expected = {(d.uuid, d.name, d.power_state, d.vcpus, d.memory_mb)
                for d in node_1000.domains}
    assert listed == expected
    assert Counter(p for _, _, p, _, _ in listed) == {
        PowerState.RUNNING: 334, PowerState.PAUSED: 333, PowerState.SHUTDOWN: 333}


def test_get_info_by_uuid_then_by_name(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    dom = small_node.domains[1]
    info = driver.get_info(InstanceRef(dom.uuid, "whatever"))
    assert (info.name, info.power_state, info.vcpus, info.memory_mb) == (
        dom.name, PowerState.PAUSED, dom.vcpus, dom.memory_mb)
    by_name = driver.get_info(InstanceRef("11111111-2222-3333-4444-555555555555", dom.name))
    assert by_name.uuid == dom.uuid
    with pytest.raises(InstanceNotFound) as excinfo:
        driver.get_info(InstanceRef("11111111-2222-3333-4444-555555555555", "absent"))
    assert excinfo.value.instance_uuid == "11111111-2222-3333-4444-555555555555"


# -- resources ---------------------------------------------------------------------------------
def test_get_available_resource_on_1000_domain_node(make_driver, node_1000, tmp_path, caplog):
    driver = make_driver(node_1000.uri)
    driver.init_host("compute-1")
    (nodename,) = driver.get_available_nodes()
    with caplog.at_level("DEBUG", logger="agent.virt.libvirt"):
        res = driver.get_available_resource(nodename)
    active = [d for d in node_1000.domains
              if d.power_state in (PowerState.RUNNING, PowerState.PAUSED)]
    assert res.hypervisor_hostname == nodename
    assert res.hypervisor_type == "TEST"
    assert res.memory_mb == node_1000.memory_mb
    assert res.vcpus_used == sum(d.vcpus for d in active)
    # the test hypervisor has no node memory statistics: guests' memory is counted instead
    assert res.memory_mb_used == sum(d.memory_mb for d in active)
    assert any("Node memory statistics unavailable" in r.getMessage() for r in caplog.records)
    cpu = json.loads(res.cpu_info)
    assert cpu["topology"] == {"cells": 2, "sockets": 2, "cores": 8, "threads": 2}
    assert set(cpu) == {"arch", "model", "vendor", "topology", "features"}
    instances = tmp_path / "state" / "instances"
    assert not instances.exists()  # measured on the filesystem that will hold it, not created
    st = os.statvfs(tmp_path)
    assert res.local_gb == st.f_frsize * st.f_blocks // 1024 ** 3
    assert 0 < res.local_gb_used <= res.local_gb
    assert res.disk_available_least is not None and res.disk_available_least <= res.local_gb
    assert int(res.stats["uptime"]) > 0


def test_get_available_resource_on_test_default(make_driver):
    driver = make_driver("test:///default")
    driver.init_host("compute-1")
    res = driver.get_available_resource(driver.get_available_nodes()[0])
    assert res.vcpus > 0 and res.memory_mb > 0
    assert json.loads(res.cpu_info)["arch"] == "i686"


def test_get_available_resource_for_unknown_node_is_a_driver_error(make_driver):
    driver = make_driver("test:///default")
    driver.init_host("compute-1")
    with pytest.raises(DriverError, match="'not-this-node' is not managed"):
        driver.get_available_resource("not-this-node")


# -- power operations --------------------------------------------------------------------------
def _ref(dom):
    return InstanceRef(dom.uuid, dom.name)


def _state(driver, dom):
    return driver.get_info(_ref(dom)).power_state


def test_power_off_and_on(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    running = small_node.domains[0]
    driver.power_off(_ref(running))
    assert _state(driver, running) == PowerState.SHUTDOWN
    driver.power_off(_ref(running))  # already off: nothing to do
    driver.power_on(_ref(running))
    assert _state(driver, running) == PowerState.RUNNING
    driver.power_off(_ref(running), clean_shutdown=False)
    assert _state(driver, running) == PowerState.SHUTDOWN


def test_pause_and_unpause(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    running = small_node.domains[3]
    driver.pause(_ref(running))
    assert _state(driver, running) == PowerState.PAUSED
    driver.unpause(_ref(running))
    assert _state(driver, running) == PowerState.RUNNING


def test_reboot_soft_and_hard(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    running, stopped = small_node.domains[0], small_node.domains[2]
    driver.reboot(_ref(running), RebootType.SOFT)
    assert _state(driver, running) == PowerState.RUNNING
    with pytest.raises(DriverError, match="not running"):
        driver.reboot(_ref(stopped), RebootType.SOFT)
    driver.reboot(_ref(stopped), RebootType.HARD)
    assert _state(driver, stopped) == PowerState.RUNNING


def test_operations_on_missing_guest_raise_instance_not_found(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    ghost = InstanceRef("99999999-9999-9999-9999-999999999999", "ghost")
    for call in (driver.power_off, driver.power_on, driver.pause, driver.unpause,
                 driver.resume_state_on_host_boot,
                 lambda ref: driver.reboot(ref, RebootType.HARD)):
        with pytest.raises(InstanceNotFound):
            call(ghost)


def test_resume_state_on_host_boot(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    paused, stopped = small_node.domains[1], small_node.domains[2]
    driver.resume_state_on_host_boot(_ref(stopped))
    assert _state(driver, stopped) == PowerState.RUNNING
    driver.resume_state_on_host_boot(_ref(paused))  # paused guests are left alone
    assert _state(driver, paused) == PowerState.PAUSED


def test_finish_revert_migration_starts_guest_only_when_asked(make_driver, small_node):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    stopped, other = small_node.domains[2], small_node.domains[5]
    driver.finish_revert_migration(_ref(stopped), [], power_on=False)
    assert _state(driver, stopped) == PowerState.SHUTDOWN
    driver.finish_revert_migration(_ref(stopped), [], power_on=True)
    assert _state(driver, stopped) == PowerState.RUNNING
    driver.plug_vifs(_ref(other), [])  # a no-op: VIF plumbing is the network service's
    assert _state(driver, other) == PowerState.SHUTDOWN


def _define_with_disk(driver_uri_conn, name, uuid, disk_path):
    return driver_uri_conn.defineXML(
        f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>"
        f"<disk type='file' device='disk'><source file='{disk_path}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>")


@pytest.mark.parametrize("destroy_disks", [True, False], ids=["delete-disks", "keep-disks"])
def test_destroy_undefines_and_honours_destroy_disks(make_driver, small_node, tmp_path,
                                                     destroy_disks):
    driver = make_driver(small_node.uri)
    driver.init_host("compute-1")
    instances = tmp_path / "state" / "instances"
    instances.mkdir(parents=True, exist_ok=True)
    disk = instances / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    uuid = "12345678-1234-1234-1234-123456789abc"
    conn = driver.libvirt_host.get_connection()
    _define_with_disk(conn, "with-disk", uuid, disk).create()
    ref = InstanceRef(uuid, "with-disk")
    assert driver.get_info(ref).power_state == PowerState.RUNNING
    driver.destroy(ref, destroy_disks=destroy_disks)
    with pytest.raises(InstanceNotFound):
        driver.get_info(ref)
    assert disk.exists() is (not destroy_disks)
    driver.destroy(ref)  # already gone: not an error
    assert uuid not in {i.uuid for i in driver.list_instances()}


# -- events ------------------------------------------------------------------------------------
def test_lifecycle_events_reach_the_listener(make_driver, small_node):
    timers = ManualTimers()
    driver = make_driver(small_node.uri, timers=timers)
    seen, lock = [], threading.Lock()

    def listener(event):
        with lock:
            seen.append((event.instance_uuid, event.transition))

    driver.register_event_listener(listener)
    driver.init_host("compute-1")
    dom = small_node.domains[0]
    driver.pause(_ref(dom))
    driver.unpause(_ref(dom))
    wait_for(lambda: len(seen) >= 2, "pause and resume events")
    assert seen == [(dom.uuid, Transition.PAUSED), (dom.uuid, Transition.RESUMED)]

    # A stop is held; a start within the delay cancels it (a reboot never looks like a stop).
    driver.reboot(_ref(dom), RebootType.HARD)
    wait_for(lambda: len(seen) >= 3, "the start of the rebooted guest")
    timers.fire_all()
    assert seen[2:] == [(dom.uuid, Transition.STARTED)]

    # A stop with nothing after it is delivered once the delay has passed.
    driver.power_off(_ref(dom), clean_shutdown=False)
    wait_for(lambda: driver.libvirt_host.pending_stopped_events() == [dom.uuid], "a held stop")
    assert seen[3:] == []
    timers.fire_all()
    assert seen[3:] == [(dom.uuid, Transition.STOPPED)]
    assert timers.timers[-1].delay == 15.0


def test_cleanup_host_closes_the_connection(make_driver):
    driver = make_driver("test:///default")
    driver.init_host("compute-1")
    driver.cleanup_host()
    driver.cleanup_host()  # twice is harmless
    with pytest.raises(DriverError, match="no connection to libvirt"):
        driver.list_instances()
