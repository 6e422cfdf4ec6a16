"""One body of tests, run against every driver in tests/contract/conftest.py FACTORIES.

Written in terms of the ComputeDriver interface only. Drivers may deliver lifecycle events from
their own thread and later (libvirt holds STOPPED back to tell a reboot from a stop), so event
checks wait for the event with a generous deadline instead of expecting it at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from agent.errors import DriverError, InstanceExists, InstanceNotFound
from agent.virt.types import (DriverInfo, Flavor, HostResources, InstanceInfo, InstanceRef,
                              LifecycleEvent, PowerState, RebootType, Transition)

EVENT_DEADLINE_S = 60.0


class EventRecorder:
    """A lifecycle event listener that keeps every event and lets a test wait for one."""

    def __init__(self):
        self.events: list[LifecycleEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: LifecycleEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, instance_uuid: str, transition: Transition, since: int) -> LifecycleEvent:
        deadline = time.monotonic() + EVENT_DEADLINE_S
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if event.instance_uuid == instance_uuid and event.transition is transition:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(e.instance_uuid, e.transition.value) for e in self.events[since:]]
                    pytest.fail(f"no {transition.value} event for {instance_uuid} within "
                                f"{EVENT_DEADLINE_S:.0f} s; events seen: {seen}")
                self._cond.wait(remaining)


@pytest.fixture
def started(subject):
    subject.driver.init_host(subject.host)
    return subject


def test_init_host_then_driver_info_describes_hypervisor(started):
    info = started.driver.get_driver_info()
    assert isinstance(info, DriverInfo)
    assert info.name == started.driver.name
    assert isinstance(info.hypervisor_type, str) and info.hypervisor_type
    assert isinstance(info.hypervisor_version, int) and info.hypervisor_version > 0
    assert all(isinstance(w, str) and w for w in info.warnings)


def test_available_nodes_are_named(started):
    nodes = started.driver.get_available_nodes()
    assert nodes, "a driver manages at least one node"
    assert all(isinstance(n, str) and n for n in nodes)
    assert len(set(nodes)) == len(nodes)


def test_available_resource_is_sane_for_each_node(started):
    for node in started.driver.get_available_nodes():
        res = started.driver.get_available_resource(node)
        assert isinstance(res, HostResources)
        assert res.hypervisor_hostname == node
        assert res.vcpus >= 1 and res.memory_mb >= 1 and res.local_gb >= 0
        for used in (res.vcpus_used, res.memory_mb_used, res.local_gb_used):
            assert isinstance(used, int) and used >= 0
        assert res.disk_available_least is None or res.disk_available_least >= 0
        assert res.hypervisor_type and res.hypervisor_version > 0
        cpu = json.loads(res.cpu_info)
        assert {"arch", "model", "vendor", "topology", "features"} <= set(cpu)
        assert {"cells", "sockets", "cores", "threads"} <= set(cpu["topology"])
        assert all(isinstance(v, int) and v >= 1 for v in cpu["topology"].values())
        assert isinstance(cpu["features"], list)


def test_available_resource_of_unmanaged_node_raises(started):
    with pytest.raises(DriverError):
        started.driver.get_available_resource("no-such-node-" + uuid.uuid4().hex)


def test_list_instances_shows_every_defined_guest_with_its_state(started):
    listed = started.driver.list_instances()
    assert all(isinstance(i, InstanceInfo) and isinstance(i.power_state, PowerState)
               for i in listed)
    assert {i.uuid: i.power_state for i in listed} == dict(started.known)
    assert len({i.name for i in listed}) == len(listed), "guest names are unique"


def test_get_info_matches_the_listing(started):
    listed = started.driver.list_instances()
    step = max(1, len(listed) // 50)  # a spread sample of big hosts
    for entry in listed[::step]:
        info = started.driver.get_info(InstanceRef(entry.uuid, entry.name))
        assert (info.uuid, info.name, info.power_state, info.vcpus, info.memory_mb) == \
               (entry.uuid, entry.name, entry.power_state, entry.vcpus, entry.memory_mb)


def test_get_info_of_unknown_guest_raises_instance_not_found(started):
    missing = str(uuid.uuid4())
    with pytest.raises(InstanceNotFound) as caught:
        started.driver.get_info(InstanceRef(missing, "instance-missing"))
    assert caught.value.instance_uuid == missing


def _power_off(d, g):
    d.power_off(g)


def _power_on(d, g):
    d.power_on(g)


def _pause(d, g):
    d.pause(g)


def _unpause(d, g):
    d.unpause(g)


def _hard_reboot(d, g):
    d.reboot(g, RebootType.HARD)


def _resume_on_boot(d, g):
    d.resume_state_on_host_boot(g)


# (setup steps, action, power state after it, the event it emits)
POWER_CASES = {
    "power_off-running": ((), _power_off, PowerState.SHUTDOWN, Transition.STOPPED),
    "power_on-stopped": ((_power_off,), _power_on, PowerState.RUNNING, Transition.STARTED),
    "pause-running": ((), _pause, PowerState.PAUSED, Transition.PAUSED),
    "unpause-paused": ((_pause,), _unpause, PowerState.RUNNING, Transition.RESUMED),
    "reboot-hard-running": ((), _hard_reboot, PowerState.RUNNING, Transition.STARTED),
    "reboot-hard-stopped": ((_power_off,), _hard_reboot, PowerState.RUNNING,
                            Transition.STARTED),
    "resume_state_on_host_boot-stopped": ((_power_off,), _resume_on_boot, PowerState.RUNNING,
                                          Transition.STARTED),
}


@pytest.mark.parametrize("case", list(POWER_CASES), ids=list(POWER_CASES))
def test_power_operation_changes_state_and_emits_event(started, case):
    setup, action, expected_state, expected_transition = POWER_CASES[case]
    driver, guest = started.driver, started.guest
    recorder = EventRecorder()
    driver.register_event_listener(recorder)
    for step in setup:
        step(driver, guest)
    mark = recorder.mark()
    action(driver, guest)
    assert driver.get_info(guest).power_state == expected_state
    event = recorder.wait_for(guest.uuid, expected_transition, mark)
    assert event.timestamp > 0


def test_soft_reboot_of_a_stopped_guest_raises(started):
    started.driver.power_off(started.guest)
    with pytest.raises(DriverError):
        started.driver.reboot(started.guest, RebootType.SOFT)


def test_soft_reboot_leaves_a_running_guest_running(started):
    started.driver.reboot(started.guest, RebootType.SOFT)
    assert started.driver.get_info(started.guest).power_state == PowerState.RUNNING


def test_power_operations_on_unknown_guest_raise_instance_not_found(started):
    ghost = InstanceRef(str(uuid.uuid4()), "instance-ghost")
    for action in (_power_off, _power_on, _pause, _unpause, _hard_reboot):
        with pytest.raises(InstanceNotFound):
            action(started.driver, ghost)


def test_destroy_removes_guest_and_destroying_again_is_fine(started):
    driver, guest = started.driver, started.guest
    driver.destroy(guest)
    with pytest.raises(InstanceNotFound):
        driver.get_info(guest)
    assert guest.uuid not in {i.uuid for i in driver.list_instances()}
    driver.destroy(guest)
    remaining = {i.uuid for i in driver.list_instances()}
    assert remaining == set(started.known) - {guest.uuid}


def test_plug_vifs_is_idempotent(started):
    started.driver.plug_vifs(started.guest, ())
    started.driver.plug_vifs(started.guest, ())
    assert started.driver.get_info(started.guest).power_state == PowerState.RUNNING


def test_cleanup_host_releases_and_can_repeat(started):
    started.driver.cleanup_host()
    started.driver.cleanup_host()


def test_pause_and_unpause_twice_change_nothing_the_second_time(started):
    driver, guest = started.driver, started.guest
    driver.pause(guest)
    driver.pause(guest)
    assert driver.get_info(guest).power_state == PowerState.PAUSED
    driver.unpause(guest)
    driver.unpause(guest)
    assert driver.get_info(guest).power_state == PowerState.RUNNING


# A flavor every hypervisor under test can run: nova's m1.nano sizes without the disk.
NANO = Flavor(vcpus=1, memory_mb=64)


@pytest.fixture
def spawned(started):
    """A new guest (not in `known`), destroyed after the test whatever happened."""
    new = InstanceRef(str(uuid.uuid4()), f"instance-contract-{uuid.uuid4().hex[:8]}")
    yield new
    started.driver.destroy(new)


def test_spawn_runs_a_guest_of_the_flavor_and_a_duplicate_is_refused(started, spawned):
    driver = started.driver
    recorder = EventRecorder()
    driver.register_event_listener(recorder)
    mark = recorder.mark()
    driver.spawn(spawned, NANO, "cirros-0.6.2", ())
    info = driver.get_info(spawned)
    assert (info.uuid, info.name, info.power_state, info.vcpus, info.memory_mb) == \
           (spawned.uuid, spawned.name, PowerState.RUNNING, 1, 64)
    listed = {i.uuid: i.power_state for i in driver.list_instances()}
    assert listed == {**started.known, spawned.uuid: PowerState.RUNNING}
    recorder.wait_for(spawned.uuid, Transition.STARTED, mark)

    driver.power_off(spawned, clean_shutdown=False)
    with pytest.raises(InstanceExists) as caught:
        driver.spawn(spawned, Flavor(vcpus=2, memory_mb=128), None, ())
    assert caught.value.instance_uuid == spawned.uuid
    info = driver.get_info(spawned)  # left as it was: off, of its first flavor
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.SHUTDOWN, 1, 64)


def test_spawn_under_a_name_already_defined_is_refused(started):
    driver, guest = started.driver, started.guest
    other = InstanceRef(str(uuid.uuid4()), guest.name)
    with pytest.raises(InstanceExists):
        driver.spawn(other, NANO, None, ())
    with pytest.raises(InstanceNotFound):
        driver.get_info(InstanceRef(other.uuid, ""))
    assert driver.get_info(guest).power_state == PowerState.RUNNING


def test_a_spawned_guest_is_terminated_by_destroy(started, spawned):
    driver = started.driver
    driver.spawn(spawned, NANO, None, ())
    driver.destroy(spawned)
    driver.destroy(spawned)  # a duplicate terminate is fine
    assert {i.uuid for i in driver.list_instances()} == set(started.known)


def test_rebuild_is_in_place_or_left_to_destroy_and_spawn(started):
    """A driver either rebuilds in place (the guest runs afterwards) or says it cannot, and the
    manager destroys and spawns (nova's _rebuild_default_impl)."""
    driver, guest = started.driver, started.guest
    try:
        driver.rebuild(guest, NANO, "cirros-0.6.2", ())
    except NotImplementedError:
        assert driver.get_info(guest).power_state == PowerState.RUNNING  # untouched
        return
    assert driver.get_info(guest).power_state == PowerState.RUNNING
