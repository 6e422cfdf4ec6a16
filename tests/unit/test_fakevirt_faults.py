"""Every fault switch of the fake hypervisor, seen through the driver interface."""

from __future__ import annotations

import re

import pytest

from agent.config import RawValue, resolve
from agent.errors import DriverError, InstanceNotFound
from agent.virt.types import InstanceRef, PowerState
from fakevirt.driver import FakeDriver
from fakevirt.faults import DEFAULT_INIT_HOST_MESSAGE
from fakevirt.scenario import generate_scenario


class SleepRecorder:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def driver(tmp_path, sleeps):
    conf = resolve({("DEFAULT", "host"): RawValue("h1", "test"),
                    ("DEFAULT", "state_path"): RawValue(str(tmp_path), "test")})
    return FakeDriver(conf, scenario=generate_scenario(5, hostname="h1"), sleep=sleeps)


def refs(driver):
    return [InstanceRef(i.uuid, i.name) for i in driver.list_instances()]


def test_init_host_fault_stops_start_up_until_cleared(driver):
    driver.faults.fail_init_host()
    with pytest.raises(DriverError, match=re.escape(DEFAULT_INIT_HOST_MESSAGE)):
        driver.init_host("h1")
    driver.faults.fail_init_host("libvirt socket missing")
    with pytest.raises(DriverError, match="^libvirt socket missing$"):
        driver.init_host("h1")
    driver.faults.clear()
    driver.init_host("h1")
    assert driver.get_available_nodes() == ["h1"]


def test_dropped_connection_fails_calls_and_tells_listeners(driver):
    heard: list[tuple[bool, str]] = []
    driver.register_connection_listener(lambda up, reason: heard.append((up, reason)))
    driver.init_host("h1")
    guest = refs(driver)[0]

    driver.faults.drop_connection("libvirtd went away")
    driver.faults.drop_connection("again")  # already down: nothing new
    assert heard == [(False, "libvirtd went away")]
    for call in (driver.list_instances, driver.get_available_nodes,
                 lambda: driver.get_info(guest), lambda: driver.power_off(guest),
                 lambda: driver.get_available_resource("h1")):
        with pytest.raises(DriverError, match="libvirtd went away"):
            call()
    driver.cleanup_host()  # never raises

    driver.faults.restore_connection()
    assert heard == [(False, "libvirtd went away"), (True, "")]
    assert driver.get_info(guest).power_state == PowerState.RUNNING


def test_failure_for_one_instance_leaves_others_working(driver):
    first, second = refs(driver)[:2]
    driver.faults.fail("power_off", first.uuid)
    with pytest.raises(DriverError, match=f"power_off failed for instance {first.uuid}"):
        driver.power_off(first)
    assert driver.get_info(first).power_state == PowerState.RUNNING  # nothing happened
    driver.power_off(second)
    assert driver.get_info(second).power_state == PowerState.SHUTDOWN
    driver.power_on(first)  # other methods are unaffected


def test_failure_with_a_chosen_exception(driver):
    guest = refs(driver)[0]
    driver.faults.fail("get_info", guest.uuid, InstanceNotFound(guest.uuid))
    with pytest.raises(InstanceNotFound):
        driver.get_info(guest)
    assert guest.uuid in {i.uuid for i in driver.list_instances()}


def test_failure_for_every_instance(driver):
    driver.faults.fail("destroy")
    for guest in refs(driver)[:2]:
        with pytest.raises(DriverError, match="destroy failed"):
            driver.destroy(guest)
    assert len(driver.list_instances()) == 5


def test_slow_call_sleeps_with_the_injected_sleep(driver, sleeps):
    driver.faults.slow("list_instances", 7.5)
    assert len(driver.list_instances()) == 5
    driver.get_available_nodes()
    assert sleeps.calls == [7.5]
    driver.faults.clear()
    driver.list_instances()
    assert sleeps.calls == [7.5]


def test_clear_restores_a_dropped_connection(driver):
    heard = []
    driver.register_connection_listener(lambda up, reason: heard.append(up))
    driver.faults.drop_connection()
    driver.faults.fail("get_info")
    driver.faults.clear()
    assert heard == [False, True]
    guest = refs(driver)[0]
    assert driver.get_info(guest).uuid == guest.uuid


def test_call_before_runs_once_before_the_call_for_that_instance(driver):
    driver.init_host("h1")
    first, second = refs(driver)[:2]
    seen: list[PowerState] = []
    driver.faults.call_before("power_off", lambda: seen.append(driver.get_info(first)
                                                               .power_state),
                              instance_uuid=first.uuid)
    driver.power_off(second)
    assert seen == []  # another instance: not yet
    driver.power_off(first)
    driver.power_on(first)
    driver.power_off(first)
    assert seen == [PowerState.RUNNING]  # once, before the first power-off changed the guest


def test_pause_barrier_waits_for_its_resume_file(driver, tmp_path):
    import threading

    from tests.agent_process import wait_for

    driver.init_host("h1")
    driver.faults.pause_from_environment({"FAKEVIRT_PAUSE": f"list_instances:{tmp_path}"})
    listed: list[int] = []
    caller = threading.Thread(target=lambda: listed.append(len(driver.list_instances())))
    caller.start()
    assert wait_for(lambda: (tmp_path / "paused").exists())
    assert listed == [] and caller.is_alive()
    (tmp_path / "resume").touch()
    caller.join(30)
    assert listed == [5]


def test_pause_setting_without_a_directory_is_refused(driver):
    with pytest.raises(DriverError, match="FAKEVIRT_PAUSE='get_info': expected "
                                          "METHOD:DIRECTORY"):
        driver.faults.pause_from_environment({"FAKEVIRT_PAUSE": "get_info"})



def test_pause_after_barrier_holds_the_call_once_the_guest_changed(driver, tmp_path):
    import threading

    from tests.agent_process import wait_for

    driver.init_host("h1")
    guest = driver.list_instances()[0]
    ref = InstanceRef(guest.uuid, guest.name)
    driver.power_on(ref)
    driver.faults.pause_from_environment({"FAKEVIRT_PAUSE_AFTER": f"power_off:{tmp_path}"})
    caller = threading.Thread(target=lambda: driver.power_off(ref))
    caller.start()
    assert wait_for(lambda: (tmp_path / "paused").exists())
    # the hypervisor did its work; the call has not returned to the agent yet
    assert caller.is_alive()
    assert driver.get_info(ref).power_state == PowerState.SHUTDOWN
    (tmp_path / "resume").touch()
    caller.join(30)
    assert not caller.is_alive()
