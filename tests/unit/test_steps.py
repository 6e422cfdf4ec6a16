"""The step runner: every Op is a driver call or a caller's local step, and a plan's values
follow each step's then / always / on_error, on the fake hypervisor."""

from __future__ import annotations

from agent import vocabulary as s
from agent.compute.decisions import OnError, Op, Plan, Step
from agent.compute.steps import DRIVER_CALLS, run_steps
from agent.config import RawValue, resolve
from agent.virt.types import InstanceInfo, InstanceRef, PowerState
from fakevirt.driver import FakeDriver
from fakevirt.scenario import Scenario

U = "11111111-1111-4111-8111-111111111111"
REF = InstanceRef(U, "instance-1")
CURRENT = {"vm_state": s.ACTIVE, "task_state": s.POWERING_OFF, "power_state": 1}


def fake(tmp_path, power=PowerState.RUNNING) -> FakeDriver:
    conf = resolve({("DEFAULT", "host"): RawValue("h", "test"),
                    ("DEFAULT", "state_path"): RawValue(str(tmp_path), "test")})
    driver = FakeDriver(conf, scenario=Scenario())
    driver.add_domain(InstanceInfo(U, REF.name, power, 1, 64))
    return driver


def test_every_op_is_a_driver_call_but_the_database_only_one():
    assert set(Op) - set(DRIVER_CALLS) == {Op.ABORT_MIGRATION}


def test_a_step_that_succeeds_saves_its_then(tmp_path):
    driver = fake(tmp_path)
    plan = Plan(U, "powered-off", {}, (Step(Op.POWER_OFF, OnError.LOG, then={
        "vm_state": s.STOPPED, "task_state": None, "power_state": 4}),))
    done = run_steps(driver, REF, plan, CURRENT, lambda: ())
    assert (done.action, done.error, dict(done.values), done.deleted) == (
        "powered-off", None, {"vm_state": s.STOPPED, "task_state": None, "power_state": 4},
        False)
    assert driver.get_info(REF).power_state == PowerState.SHUTDOWN


def test_a_failed_step_applies_always_and_set_error_and_stops(tmp_path):
    driver = fake(tmp_path)
    driver.faults.fail("reboot", U)
    plan = Plan(U, "rebooted-hard", {"task_state": s.REBOOT_PENDING_HARD}, (
        Step(Op.REBOOT_HARD, OnError.SET_ERROR, then={"task_state": None},
             always={"task_state": None}),
        Step(Op.POWER_OFF, OnError.LOG)))
    done = run_steps(driver, REF, plan, CURRENT, lambda: ())
    assert done.action == "failed" and "reboot-hard" in done.error
    assert (done.values["vm_state"], done.values["task_state"]) == (s.ERROR, None)
    assert driver.get_info(REF).power_state == PowerState.RUNNING  # power-off never ran


def test_a_local_step_runs_in_place_of_a_driver_call(tmp_path):
    ran = []
    plan = Plan(U, "aborted-migration", {}, (Step(Op.ABORT_MIGRATION, OnError.CONTINUE,
                                                  then={"task_state": None}),))
    done = run_steps(fake(tmp_path), REF, plan, CURRENT, lambda: (),
                     local={Op.ABORT_MIGRATION: ran.append})
    assert [step.op for step in ran] == [Op.ABORT_MIGRATION]
    assert done.values["task_state"] is None and done.action == "aborted-migration"


def test_a_fail_step_hands_its_error_to_the_caller_and_stops(tmp_path, caplog):
    """An RPC operation's step: the error (with its traceback) comes back for the caller to
    record; nothing is logged here and the next step does not run."""
    driver = fake(tmp_path)
    driver.faults.fail("pause", U)
    plan = Plan(U, "pause", {}, (Step(Op.PAUSE, OnError.FAIL), Step(Op.POWER_OFF, OnError.FAIL)))
    done = run_steps(driver, REF, plan, CURRENT, lambda: ())
    assert done.action == "failed" and done.exception is not None
    assert done.exception.__traceback__ is not None
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert driver.get_info(REF).power_state == PowerState.RUNNING  # power-off never ran


def test_a_driver_that_cannot_do_a_fail_step_fails_it(tmp_path, monkeypatch):
    driver = fake(tmp_path)

    def cannot(*_args, **_kwargs):
        raise NotImplementedError("no pause here")

    monkeypatch.setattr(driver, "pause", cannot)
    done = run_steps(driver, REF, Plan(U, "pause", {}, (Step(Op.PAUSE, OnError.FAIL),)),
                     CURRENT, lambda: ())
    assert isinstance(done.exception, NotImplementedError) and done.action == "failed"


def test_vifs_are_read_only_by_the_calls_that_take_them(tmp_path):
    read = []
    plan = Plan(U, "powered-off", {}, (Step(Op.POWER_OFF, OnError.FAIL),))
    run_steps(fake(tmp_path), REF, plan, CURRENT, lambda: read.append(1) or ())
    assert read == []
