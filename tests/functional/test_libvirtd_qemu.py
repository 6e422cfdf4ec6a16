"""The real tier: LibvirtDriver against a running libvirtd with QEMU (TCG is enough).

Guests are tiny (32 MiB, no disk, no boot device: QEMU just runs), uniquely named and always
removed. The restart tests kill the libvirtd process and start it again with .ci/start-libvirtd,
as an operator's crash would, and watch the driver and the service registry react.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid as uuidlib
from pathlib import Path

import pytest
from sqlalchemy import update

from agent import registry
from agent.compute.connection_guard import ConnectionGuard
from agent.db.models import Service
from agent.errors import InstanceExists
from agent.virt.libvirt.driver import LibvirtDriver
from agent.virt.libvirt.host import Host
from agent.virt.types import Flavor, InstanceRef, PowerState, RebootType, Transition
from tests.agent_process import bounded
from tests.conftest import import_libvirt, require_tier
from tests.functional.test_libvirt_driver import ManualTimers, make_conf, wait_for
from tests.qemu_tier import URI, domstate, require_qemu_tier, virsh_names

libvirt = import_libvirt()

pytestmark = pytest.mark.libvirtd

START_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "start-libvirtd"
RESTART_DEADLINE_S = 120.0
SYSTEM_PID_FILE = "/run/libvirtd.pid"  # libvirtd --daemon as root


@pytest.fixture
def qemu_conn():
    require_qemu_tier()
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture
def tiny_guest(qemu_conn):
    """A defined (not started) guest; destroyed and undefined afterwards whatever happened."""
    uuid = str(uuidlib.uuid4())
    name = f"cagent-test-{uuid[:8]}"
    emulator = "/usr/bin/qemu-system-x86_64"
    kvm = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.W_OK)
    qemu_conn.defineXML(
        f"<domain type='{'kvm' if kvm else 'qemu'}'><name>{name}</name><uuid>{uuid}</uuid>"
        "<memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<on_poweroff>destroy</on_poweroff><devices><emulator>{emulator}</emulator>"
        "</devices></domain>")
    yield InstanceRef(uuid, name)
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError:
        return
    try:
        dom = conn.lookupByUUIDString(uuid)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


@pytest.fixture
def make_qemu_driver(tmp_path, qemu_conn):
    drivers = []

    def make(*, shutdown_timeout=2, libvirt_options=None, **host_args):
        # The clean-shutdown waits come from the configuration, as on a real host.
        conf = make_conf(tmp_path, URI, virt_type="qemu", **(libvirt_options or {}))
        conf = conf.replace(shutdown_timeout=shutdown_timeout)
        driver = LibvirtDriver(conf, host=Host(URI, **host_args), poll_interval=0.1)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.cleanup_host()


class Recorder:
    def __init__(self):
        self.items = []
        self._lock = threading.Lock()

    def __call__(self, *args):
        with self._lock:
            self.items.append(args if len(args) > 1 else args[0])

    def snapshot(self):
        with self._lock:
            return list(self.items)


def test_init_host_passes_version_checks_on_real_qemu(make_qemu_driver):
    driver = make_qemu_driver()
    driver.init_host("compute-1")
    info = driver.get_driver_info()
    assert info.hypervisor_type == "QEMU"
    assert info.hypervisor_version >= 6_002_000
    # Only "below the next floor" findings: never a failure, never a quality warning.
    assert all("which the next release will require" in w for w in info.warnings)


def test_get_available_resource_on_real_qemu(make_qemu_driver, qemu_conn):
    driver = make_qemu_driver()
    driver.init_host("compute-1")
    res = driver.get_available_resource(driver.get_available_nodes()[0])
    assert res.vcpus == os.cpu_count()
    assert res.memory_mb == qemu_conn.getInfo()[1]
    meminfo = {}
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            key, value = line.split(":")
            meminfo[key] = int(value.split()[0])
    in_use_mb = (meminfo["MemTotal"] - meminfo["MemFree"] - meminfo["Buffers"]
                 - meminfo["Cached"]) // 1024
    assert 0 < res.memory_mb_used <= res.memory_mb
    assert abs(res.memory_mb_used - min(in_use_mb, res.memory_mb)) <= 512
    cpu = json.loads(res.cpu_info)
    assert cpu["arch"] == "x86_64" and cpu["model"] and cpu["features"]
    assert res.hypervisor_type == "QEMU"


def test_tiny_guest_lifecycle_through_the_driver(make_qemu_driver, tiny_guest, caplog):
    timers = ManualTimers()
    driver = make_qemu_driver(timer_factory=timers)
    events = Recorder()
    driver.register_event_listener(
        lambda e: events(e.transition) if e.instance_uuid == tiny_guest.uuid else None)
    driver.init_host("compute-1")
    assert driver.get_info(tiny_guest).power_state == PowerState.SHUTDOWN

    # QEMU starts a guest paused and resumes it: a start reports RESUMED, then STARTED.
    driver.power_on(tiny_guest)
    wait_for(lambda: Transition.STARTED in events.snapshot(), "the STARTED event")
    info = driver.get_info(tiny_guest)
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.RUNNING, 1, 32)
    assert tiny_guest.uuid in {i.uuid for i in driver.list_instances()}

    seen = len(events.snapshot())
    driver.pause(tiny_guest)
    driver.unpause(tiny_guest)
    wait_for(lambda: len(events.snapshot()) >= seen + 2, "pause and resume events")
    assert events.snapshot()[seen:] == [Transition.PAUSED, Transition.RESUMED]

    # No guest OS answers ACPI: the clean shutdown times out (shutdown_timeout = 2) and the
    # guest is destroyed.
    seen = len(events.snapshot())
    with caplog.at_level(logging.WARNING, logger="agent.virt.libvirt"):
        driver.power_off(tiny_guest, clean_shutdown=True)
    assert any(f"{tiny_guest.uuid} did not shut down within 2 s" in r.getMessage()
               for r in caplog.records)
    assert driver.get_info(tiny_guest).power_state == PowerState.SHUTDOWN
    wait_for(lambda: driver.libvirt_host.pending_stopped_events() == [tiny_guest.uuid],
             "the held STOPPED event")
    assert events.snapshot()[seen:] == []  # held, not yet delivered
    timers.fire_all()
    assert events.snapshot()[seen:] == [Transition.STOPPED]

    driver.power_on(tiny_guest)
    assert driver.get_info(tiny_guest).power_state == PowerState.RUNNING
    driver.destroy(tiny_guest)
    assert tiny_guest.uuid not in {i.uuid for i in driver.list_instances()}


def test_soft_reboot_of_a_guest_without_an_os_is_done_hard_after_its_own_wait(
        make_qemu_driver, tiny_guest, qemu_conn, caplog):
    # No OS answers the ACPI request: after [libvirt] wait_soft_reboot_seconds (not the stop's
    # shutdown_timeout, long here) the guest is rebooted hard, as nova's libvirt driver does.
    driver = make_qemu_driver(shutdown_timeout=3600,
                              libvirt_options={"wait_soft_reboot_seconds": "1"})
    driver.init_host("compute-1")
    driver.power_on(tiny_guest)
    before = qemu_conn.lookupByUUIDString(tiny_guest.uuid).ID()
    with caplog.at_level(logging.WARNING, logger="agent.virt.libvirt"):
        bounded(lambda: driver.reboot(tiny_guest, RebootType.SOFT), deadline=300)
    warnings = [r.getMessage() for r in caplog.records]
    assert f"Instance {tiny_guest.uuid} did not shut down within 1 s " \
        "(wait_soft_reboot_seconds)" in warnings
    assert f"Soft reboot of {tiny_guest.uuid} failed; rebooting hard" in warnings
    # A new QEMU process (new domain id), running: the guest was really restarted.
    assert qemu_conn.lookupByUUIDString(tiny_guest.uuid).ID() != before
    assert domstate(tiny_guest.name) == "running"
    assert driver.get_info(tiny_guest).power_state == PowerState.RUNNING


@pytest.fixture
def new_guest(qemu_conn):
    """A guest name and uuid nothing defines yet; removed afterwards whatever happened."""
    uuid = str(uuidlib.uuid4())
    yield InstanceRef(uuid, f"cagent-spawn-{uuid[:8]}")
    try:
        dom = qemu_conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def test_spawn_starts_a_guest_of_the_flavor_that_virsh_lists(make_qemu_driver, new_guest):
    driver = make_qemu_driver()
    driver.init_host("compute-1")
    driver.spawn(new_guest, Flavor(vcpus=2, memory_mb=48), "cirros-0.6.2", ())
    info = driver.get_info(new_guest)
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.RUNNING, 2, 48)
    assert new_guest.name in virsh_names()

    with pytest.raises(InstanceExists):
        driver.spawn(new_guest, Flavor(vcpus=1, memory_mb=32), None, ())
    assert driver.get_info(new_guest).vcpus == 2  # the running guest was left alone

    driver.destroy(new_guest)
    assert new_guest.name not in virsh_names()
    assert new_guest.uuid not in {i.uuid for i in driver.list_instances()}


# -- killing libvirtd --------------------------------------------------------------------------
def _libvirtd_pid() -> int:
    pid = _system_libvirtd_pid()
    require_tier("libvirtd", pid is not None,
                 f"no system libvirtd to kill ({SYSTEM_PID_FILE} missing or stale)")
    return pid


def _system_libvirtd_pid() -> int | None:
    """The running system libvirtd, from its pid file: not pgrep, since other libvirtd
    processes (a test's private session daemon) may run next to it."""
    try:
        with open(SYSTEM_PID_FILE, encoding="ascii") as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state == "Z" else pid  # a killed daemon nobody reaped yet is gone


def _restart_libvirtd() -> None:
    subprocess.run(["bash", str(START_SCRIPT)], check=True, capture_output=True,
                   timeout=RESTART_DEADLINE_S)


@pytest.fixture
def killable_libvirtd(qemu_conn):
    require_tier("libvirtd", os.geteuid() == 0 and START_SCRIPT.exists(),
                 "restarting libvirtd needs root and .ci/start-libvirtd")
    pid = _libvirtd_pid()

    def kill():
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    yield kill
    if _system_libvirtd_pid() is None:
        _restart_libvirtd()


def test_killed_libvirtd_is_reported_lost_then_back(make_qemu_driver, killable_libvirtd):
    driver = make_qemu_driver(reconnect_delays=(0.2, 0.5, 1.0))
    changes = Recorder()
    driver.register_connection_listener(changes)
    driver.init_host("compute-1")

    killable_libvirtd()
    wait_for(lambda: len(changes.snapshot()) >= 1, "the connection-lost notification")
    available, reason = changes.snapshot()[0]
    assert available is False
    assert reason.startswith("connection to libvirt lost: ")

    _restart_libvirtd()
    wait_for(lambda: len(changes.snapshot()) >= 2, "the reconnect notification")
    assert changes.snapshot()[1] == (True, "")
    # the driver works again, on the new connection
    assert driver.get_driver_info().hypervisor_type == "QEMU"
    assert driver.get_available_resource(driver.get_available_nodes()[0]).vcpus >= 1


def _service(db, service_id):
    return registry.load_service_by_id(db, service_id)


def test_killed_libvirtd_disables_then_reenables_the_service(make_qemu_driver,
                                                            killable_libvirtd, sqlite_db):
    service = registry.register_service(sqlite_db, "compute-1", starting=False)
    driver = make_qemu_driver(reconnect_delays=(0.2, 0.5, 1.0))
    driver.register_connection_listener(ConnectionGuard(sqlite_db, service.id))
    driver.init_host("compute-1")
    assert not _service(sqlite_db, service.id).disabled

    killable_libvirtd()
    wait_for(lambda: _service(sqlite_db, service.id).disabled, "the automatic disable")
    assert _service(sqlite_db, service.id).disabled_reason == "AUTO: connection to libvirt lost"

    _restart_libvirtd()
    wait_for(lambda: not _service(sqlite_db, service.id).disabled, "the automatic re-enable")
    assert _service(sqlite_db, service.id).disabled_reason is None


def test_reconnect_keeps_an_operators_disable(make_qemu_driver, killable_libvirtd, sqlite_db):
    service = registry.register_service(sqlite_db, "compute-1", starting=False)
    driver = make_qemu_driver(reconnect_delays=(0.2, 0.5, 1.0))
    changes = Recorder()
    guard = ConnectionGuard(sqlite_db, service.id)
    driver.register_connection_listener(lambda up, why: (guard(up, why), changes(up, why)))
    driver.init_host("compute-1")

    killable_libvirtd()
    wait_for(lambda: _service(sqlite_db, service.id).disabled, "the automatic disable")
    # While libvirtd is down, an operator disables the service for their own reason.
    with sqlite_db.engine.begin() as conn:
        conn.execute(update(Service).where(Service.id == service.id)
                     .values(disabled=True, disabled_reason="disk replacement, ticket 4711"))

    _restart_libvirtd()
    wait_for(lambda: (True, "") in changes.snapshot(), "the reconnect")
    record = _service(sqlite_db, service.id)
    assert record.disabled
    assert record.disabled_reason == "disk replacement, ticket 4711"
