"""FakeDriver behaviour beyond the shared contract: where its host comes from, what it reports,
the hypervisor-side changes tests use, and thread safety."""

from __future__ import annotations

import json
import os
import threading

import psutil
import pytest

from agent.config import RawValue, resolve
from agent.errors import DriverError, InstanceNotFound, ScenarioError
from agent.virt.types import InstanceInfo, InstanceRef, PowerState, RebootType, Transition
from fakevirt.driver import FakeDriver
from fakevirt.scenario import Scenario, generate_scenario, load_scenario

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "etc",
                       "scenario.example.toml")


def conf_for(tmp_path, host="h1", **fakevirt):
    raw = {("DEFAULT", "host"): RawValue(host, "test"),
           ("DEFAULT", "state_path"): RawValue(str(tmp_path / "state"), "test")}
    for name, value in fakevirt.items():
        raw[("fakevirt", name)] = RawValue(value, "test")
    return resolve(raw)


class Events(list):
    def __call__(self, event):
        self.append((event.instance_uuid, event.transition))


def test_scenario_option_is_loaded_by_the_constructor(tmp_path):
    driver = FakeDriver(conf_for(tmp_path, scenario=EXAMPLE))
    assert driver.get_available_nodes() == ["compute-1"]
    assert len(driver.list_instances()) == len(load_scenario(EXAMPLE).domains)


def test_malformed_scenario_option_stops_construction(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[domains]]\nuuid = 3\n")
    with pytest.raises(ScenarioError, match=f"^{bad}: domains\\[0\\]: uuid: 3 is not a uuid"):
        FakeDriver(conf_for(tmp_path, scenario=str(bad)))


def test_without_scenario_the_node_is_the_host_and_resources_are_this_machine(tmp_path):
    driver = FakeDriver(conf_for(tmp_path, host="compute-42"), scenario=Scenario())
    assert driver.get_available_nodes() == ["compute-42"]
    res = driver.get_available_resource("compute-42")
    assert res.vcpus == psutil.cpu_count()
    assert res.memory_mb == psutil.virtual_memory().total // (1024 * 1024)
    # state_path does not exist yet: the filesystem that will hold it is measured
    assert res.local_gb == psutil.disk_usage(str(tmp_path)).total // (1024 ** 3)
    assert (res.vcpus_used, res.memory_mb_used, res.local_gb_used) == (0, 0, 0)
    assert (res.hypervisor_type, res.hypervisor_version) == ("fake", 1000)


def test_scenario_host_sizes_and_usage_of_running_guests(tmp_path):
    driver = FakeDriver(conf_for(tmp_path), scenario=load_scenario(EXAMPLE))
    res = driver.get_available_resource("compute-1")
    assert (res.vcpus, res.memory_mb, res.local_gb) == (16, 65536, 500)
    running = [d for d in load_scenario(EXAMPLE).domains if d.power_state == PowerState.RUNNING]
    assert res.vcpus_used == sum(d.vcpus for d in running)
    assert res.memory_mb_used == sum(d.memory_mb for d in running)
    assert res.local_gb_used == sum(d.disk_gb for d in load_scenario(EXAMPLE).domains)
    cpu = json.loads(res.cpu_info)
    assert cpu["topology"] == {"cells": 1, "sockets": 2, "cores": 4, "threads": 2}
    assert cpu["arch"] == "x86_64" and "popcnt" in cpu["features"]


def test_get_available_resource_for_another_node_names_both(tmp_path):
    driver = FakeDriver(conf_for(tmp_path), scenario=Scenario())
    with pytest.raises(DriverError, match="'other' is not managed here.*'h1'"):
        driver.get_available_resource("other")


@pytest.fixture
def driver(tmp_path):
    return FakeDriver(conf_for(tmp_path), scenario=generate_scenario(10, hostname="h1"))


def ref(driver, state):
    info = next(i for i in driver.list_instances() if i.power_state == state)
    return InstanceRef(info.uuid, info.name)


@pytest.mark.parametrize("state,action,expected_state,expected_events", [
    (PowerState.SHUTDOWN, "power_off", PowerState.SHUTDOWN, []),
    (PowerState.RUNNING, "power_on", PowerState.RUNNING, []),
    (PowerState.PAUSED, "power_on", PowerState.RUNNING,
     [Transition.STOPPED, Transition.STARTED]),
    (PowerState.PAUSED, "pause", PowerState.PAUSED, []),
    (PowerState.RUNNING, "unpause", PowerState.RUNNING, []),
    (PowerState.PAUSED, "power_off", PowerState.SHUTDOWN, [Transition.STOPPED]),
    (PowerState.RUNNING, "resume_state_on_host_boot", PowerState.RUNNING, []),
    (PowerState.PAUSED, "resume_state_on_host_boot", PowerState.RUNNING,
     [Transition.STOPPED, Transition.STARTED]),
], ids=["off-power_off", "on-power_on", "paused-power_on", "paused-pause", "on-unpause",
        "paused-power_off", "on-resume", "paused-resume"])
def test_power_operation_table(driver, state, action, expected_state, expected_events):
    events = Events()
    driver.register_event_listener(events)
    guest = ref(driver, state)
    getattr(driver, action)(guest)
    assert driver.get_info(guest).power_state == expected_state
    assert [t for _, t in events] == expected_events


@pytest.mark.parametrize("state,action", [(PowerState.SHUTDOWN, "pause"),
                                          (PowerState.SHUTDOWN, "unpause")])
def test_pause_and_unpause_refuse_a_stopped_guest(driver, state, action):
    guest = ref(driver, state)
    with pytest.raises(DriverError, match="shutdown"):
        getattr(driver, action)(guest)
    assert driver.get_info(guest).power_state == state


def test_destroy_keeps_disks_on_shared_storage(driver):
    kept, removed = ref(driver, PowerState.RUNNING), ref(driver, PowerState.SHUTDOWN)
    events = Events()
    driver.register_event_listener(events)
    driver.destroy(kept, destroy_disks=False)
    driver.destroy(removed)
    assert driver.has_disks(kept.uuid) and not driver.has_disks(removed.uuid)
    assert events == [(kept.uuid, Transition.STOPPED)]  # the stopped one emits nothing


def test_finish_revert_migration_defines_a_missing_guest(driver):
    guest = InstanceRef("12345678-1234-4234-8234-123456789012", "instance-reverted")
    driver.finish_revert_migration(guest, (), power_on=True)
    assert driver.get_info(guest).power_state == PowerState.RUNNING
    other = ref(driver, PowerState.RUNNING)
    driver.finish_revert_migration(other, (), power_on=False)
    assert driver.get_info(other).power_state == PowerState.SHUTDOWN


def test_plug_vifs_records_the_network_info(driver):
    vifs = generate_scenario(1, hostname="x").instances[0].network_info
    guest = ref(driver, PowerState.RUNNING)
    driver.plug_vifs(guest, vifs)
    driver.plug_vifs(guest, vifs)
    assert driver.plugged_vifs(guest.uuid) == vifs


def test_hypervisor_side_change_emits_the_given_event(driver):
    events = Events()
    driver.register_event_listener(events)
    guest = ref(driver, PowerState.RUNNING)
    driver.set_power_state(guest.uuid, PowerState.CRASHED, Transition.STOPPED)
    assert driver.get_info(guest).power_state == PowerState.CRASHED
    assert events == [(guest.uuid, Transition.STOPPED)]


def test_add_domain_refuses_duplicates(driver):
    existing = driver.list_instances()[0]
    with pytest.raises(DriverError, match="uuid"):
        driver.add_domain(existing)
    with pytest.raises(DriverError, match="named"):
        driver.add_domain(InstanceInfo("12345678-1234-4234-8234-123456789012", existing.name,
                                       PowerState.RUNNING, 1, 512))


def test_listener_may_call_back_into_the_driver(driver):
    seen = []

    def listener(event):
        seen.append(driver.get_info(InstanceRef(event.instance_uuid, "")).power_state)
    driver.register_event_listener(listener)
    driver.reboot(ref(driver, PowerState.RUNNING), RebootType.HARD)
    assert seen == [PowerState.RUNNING, PowerState.RUNNING]


def test_concurrent_power_operations_from_threads_stay_consistent(tmp_path):
    driver = FakeDriver(conf_for(tmp_path), scenario=generate_scenario(400, hostname="h1"))
    events = Events()
    lock = threading.Lock()
    driver.register_event_listener(lambda e: (lock.acquire(), events(e), lock.release()))
    running = [InstanceRef(i.uuid, i.name) for i in driver.list_instances()
               if i.power_state == PowerState.RUNNING]

    def worker(guests):
        for guest in guests:
            driver.power_off(guest)
            driver.list_instances()

    threads = [threading.Thread(target=worker, args=(running[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = [i.power_state for i in driver.list_instances()]
    assert states.count(PowerState.RUNNING) == 0
    assert sorted(u for u, _ in events) == sorted(g.uuid for g in running)


def test_ten_thousand_domains_list_and_read(tmp_path):
    driver = FakeDriver(conf_for(tmp_path), scenario=generate_scenario(10_000, hostname="h1"))
    listed = driver.list_instances()
    assert len(listed) == 10_000
    assert driver.get_info(InstanceRef(listed[-1].uuid, listed[-1].name)) == listed[-1]
    with pytest.raises(InstanceNotFound):
        driver.get_info(InstanceRef("12345678-1234-4234-8234-123456789012", "x"))


def test_domains_file_keeps_the_guests_across_restarts(tmp_path):
    """With [fakevirt] domains_file the guests outlive the driver (the agent process), as a
    real hypervisor's do: a new driver finds what the last one left, not the scenario's."""
    from agent.virt.types import Flavor

    path = tmp_path / "domains.json"
    conf = conf_for(tmp_path, scenario=EXAMPLE, domains_file=str(path))
    first = FakeDriver(conf)
    start = {d.uuid: d.power_state for d in first.list_instances()}
    assert len(json.loads(path.read_text())["domains"]) == len(start)
    new = InstanceRef("0b6f0e8e-33b4-4c1a-9d1e-00000000abcd", "new-guest")
    first.spawn(new, Flavor(vcpus=1, memory_mb=256, root_gb=1), None)
    gone = next(iter(start))
    first.destroy(InstanceRef(gone, ""))
    running = next(u for u, p in start.items() if u != gone and p == PowerState.RUNNING)
    first.power_off(InstanceRef(running, ""))

    second = FakeDriver(conf)  # the scenario's domains are not defined again
    after = {d.uuid: d.power_state for d in second.list_instances()}
    assert set(after) == (set(start) - {gone}) | {new.uuid}
    assert after[new.uuid] == PowerState.RUNNING
    assert after[running] == PowerState.SHUTDOWN
    assert not second.has_disks(gone) and second.has_disks(new.uuid)


def test_unreadable_domains_file_names_it(tmp_path):
    path = tmp_path / "domains.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DriverError, match=f"domains file {path}: cannot read it"):
        FakeDriver(conf_for(tmp_path, domains_file=str(path)))
