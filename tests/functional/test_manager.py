"""ComputeManager.init_host on fakevirt with a real database: every _init_instance branch and
what it leaves in the database and on the hypervisor."""

from __future__ import annotations

import uuid as uuid_lib

import pytest
from sqlalchemy import update

from agent import vocabulary as s
from agent.compute.manager import ComputeManager
from agent.db.models import Instance
from agent.virt.recording import RecordingDriver
from agent.virt.types import LifecycleEvent, PowerState as P, Transition
from fakevirt.scenario import InstanceSeed, MigrationSeed
from tests.agent_process import wait_for
from tests.functional.compute_helpers import (GONE, HOST, domain, guest_power, instance_row,
                                              make_conf, make_driver, make_scenario,
                                              migration_row, noop_firewall, read_only, seeded)
from tests.functional.statement_counter import count_statements

U = "11111111-1111-4111-8111-111111111111"

# id, vm, task, db power, guest power (None: no guest), old_vm_state, resume flag,
# -> action, vm_state, task_state, power_state, row deleted, guest afterwards
CASES = [
    ("soft-deleted", s.SOFT_DELETED, None, P.SHUTDOWN, P.SHUTDOWN, None, False,
     "skipped", s.SOFT_DELETED, None, P.SHUTDOWN, False, P.SHUTDOWN),
    ("error", s.ERROR, None, P.RUNNING, P.RUNNING, None, False,
     "skipped", s.ERROR, None, P.RUNNING, False, P.RUNNING),
    ("partial-delete", s.DELETED, None, P.RUNNING, P.RUNNING, None, False,
     "deleted", s.DELETED, None, P.RUNNING, True, GONE),
    ("building", s.BUILDING, s.SPAWNING, P.NOSTATE, None, None, False,
     "set-error", s.ERROR, None, P.NOSTATE, False, None),
    ("rebuilding", s.ACTIVE, s.REBUILD_SPAWNING, P.RUNNING, P.RUNNING, None, False,
     "set-error", s.ERROR, None, P.RUNNING, False, P.RUNNING),
    ("snapshot", s.ACTIVE, s.IMAGE_UPLOADING, P.RUNNING, P.RUNNING, None, False,
     "cleared-task", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("resize-prep", s.ACTIVE, s.RESIZE_PREP, P.RUNNING, P.RUNNING, None, False,
     "cleared-task", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("deleting", s.ACTIVE, s.DELETING, P.RUNNING, P.RUNNING, None, False,
     "deleted", s.DELETED, None, P.RUNNING, True, GONE),
    ("reboot-soft", s.ACTIVE, s.REBOOT_PENDING, P.RUNNING, P.RUNNING, None, False,
     "rebooted-soft", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("reboot-hard-guest-down", s.ACTIVE, s.REBOOTING, P.RUNNING, P.SHUTDOWN, None, False,
     "rebooted-hard", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("reboot-finished", s.ACTIVE, s.REBOOT_STARTED, P.RUNNING, P.RUNNING, None, False,
     "cleared-task", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("unpause", s.PAUSED, s.UNPAUSING, P.PAUSED, P.PAUSED, None, False,
     "unpaused", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("power-off", s.ACTIVE, s.POWERING_OFF, P.RUNNING, P.RUNNING, None, False,
     "powered-off", s.STOPPED, None, P.SHUTDOWN, False, P.SHUTDOWN),
    ("power-on", s.STOPPED, s.POWERING_ON, P.SHUTDOWN, P.SHUTDOWN, None, False,
     "powered-on", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("revert-resize-running", s.ACTIVE, s.RESIZE_MIGRATING, P.RUNNING, P.SHUTDOWN, s.ACTIVE,
     False, "reverted-resize", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("revert-resize-stopped", s.STOPPED, s.RESIZE_MIGRATING, P.SHUTDOWN, P.SHUTDOWN,
     s.STOPPED, False, "reverted-resize", s.STOPPED, None, P.SHUTDOWN, False, P.SHUTDOWN),
    ("resume", s.ACTIVE, None, P.RUNNING, P.SHUTDOWN, None, True,
     "resumed", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
    ("no-resume-without-flag", s.ACTIVE, None, P.RUNNING, P.SHUTDOWN, None, False,
     "none", s.ACTIVE, None, P.RUNNING, False, P.SHUTDOWN),
    ("plain-running", s.ACTIVE, None, P.RUNNING, P.RUNNING, None, True,
     "none", s.ACTIVE, None, P.RUNNING, False, P.RUNNING),
]


@pytest.mark.parametrize("vm,task,db_power,guest,old_vm,resume,action,exp_vm,exp_task,"
                         "exp_power,exp_deleted,exp_guest",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_init_instance_branch(tmp_path, db, vm, task, db_power, guest, old_vm, resume,
                              action, exp_vm, exp_task, exp_power, exp_deleted, exp_guest):
    scenario = seeded(db, make_scenario(
        [InstanceSeed(U, display_name="vm-1", host=HOST, node=HOST, vm_state=vm,
                        task_state=task, power_state=db_power, old_vm_state=old_vm)],
        [domain(U, guest)] if guest is not None else []))
    conf = make_conf(tmp_path, db, resume_guests_state_on_host_boot=resume)
    driver = make_driver(conf, scenario)
    manager = ComputeManager(conf, db, driver, noop_firewall())
    try:
        result = manager.init_host()
    finally:
        manager.stop()
    assert [(o.uuid, o.action) for o in result.instances] == [(U, action)]
    row = instance_row(db, U)
    assert (row.vm_state, row.task_state, row.power_state) == (exp_vm, exp_task, int(exp_power))
    assert bool(row.deleted) is exp_deleted
    assert guest_power(driver, U) == (exp_guest if exp_guest is not None else GONE)


def test_instance_of_another_host_on_this_hypervisor_is_left_alone(tmp_path,
                                                                    sqlite_rolled_back_db):
    scenario = seeded(sqlite_rolled_back_db, make_scenario(
        [InstanceSeed(U, host="other-host", node="other-host", vm_state=s.ACTIVE)],
        [domain(U, P.RUNNING)]))
    conf = make_conf(tmp_path, sqlite_rolled_back_db)
    driver = make_driver(conf, scenario)
    result = ComputeManager(conf, sqlite_rolled_back_db, driver, noop_firewall()).init_host()
    assert [o.action for o in result.instances] == ["skipped-other-host"]
    assert guest_power(driver, U) == P.RUNNING
    assert instance_row(sqlite_rolled_back_db, U).host == "other-host"


def test_live_migration_interrupted_is_aborted(tmp_path, db):
    mig = str(uuid_lib.uuid4())
    scenario = seeded(db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE, task_state=s.MIGRATING)],
        [domain(U, P.RUNNING)],
        [MigrationSeed(mig, U, "live-migration", "running", HOST, "dest", HOST, "dest")]))
    conf = make_conf(tmp_path, db)
    result = ComputeManager(conf, db, make_driver(conf, scenario),
                            noop_firewall()).init_host()
    assert [o.action for o in result.instances] == ["aborted-migration"]
    assert instance_row(db, U).task_state is None
    assert migration_row(db, mig).status == "error"


def test_one_failing_instance_does_not_stop_the_others(tmp_path, sqlite_rolled_back_db):
    good, bad = str(uuid_lib.uuid4()), str(uuid_lib.uuid4())
    scenario = seeded(sqlite_rolled_back_db, make_scenario(
        [InstanceSeed(bad, host=HOST, node=HOST, vm_state=s.ACTIVE),
         InstanceSeed(good, host=HOST, node=HOST, vm_state=s.STOPPED,
                        task_state=s.POWERING_ON, power_state=P.SHUTDOWN)],
        [domain(bad, P.RUNNING), domain(good, P.SHUTDOWN)]))
    conf = make_conf(tmp_path, sqlite_rolled_back_db)
    driver = make_driver(conf, scenario)
    driver.faults.fail("plug_vifs", bad)
    result = ComputeManager(conf, sqlite_rolled_back_db, driver, noop_firewall()).init_host()
    actions = {o.uuid: o.action for o in result.instances}
    assert actions == {bad: "failed", good: "powered-on"}
    assert instance_row(sqlite_rolled_back_db, bad).vm_state == s.ERROR  # a failed plug sets ERROR
    assert instance_row(sqlite_rolled_back_db, good).vm_state == s.ACTIVE
    assert guest_power(driver, good) == P.RUNNING


def test_failed_power_off_is_logged_and_state_kept(tmp_path, sqlite_rolled_back_db):
    scenario = seeded(sqlite_rolled_back_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE, task_state=s.POWERING_OFF)],
        [domain(U, P.RUNNING)]))
    conf = make_conf(tmp_path, sqlite_rolled_back_db)
    driver = make_driver(conf, scenario)
    driver.faults.fail("power_off", U)
    result = ComputeManager(conf, sqlite_rolled_back_db, driver, noop_firewall()).init_host()
    assert result.instances[0].action == "failed"
    row = instance_row(sqlite_rolled_back_db, U)
    assert (row.vm_state, row.task_state) == (s.ACTIVE, s.POWERING_OFF)


def test_dry_run_changes_nothing(tmp_path, sqlite_db):
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE, task_state=s.POWERING_OFF)],
        [domain(U, P.RUNNING)]))
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, scenario)
    recording, ro_db = RecordingDriver(driver), read_only(sqlite_db)
    try:
        result = ComputeManager(conf, ro_db, recording, noop_firewall()).init_host()
    finally:
        ro_db.dispose()
    assert result.instances[0].action == "powered-off"
    assert result.instances[0].vm_state == s.STOPPED  # what it would be
    assert [c[:2] for c in recording.calls] == [("power-off", U)]
    row = instance_row(sqlite_db, U)
    assert (row.vm_state, row.task_state) == (s.ACTIVE, s.POWERING_OFF)
    assert guest_power(driver, U) == P.RUNNING


def test_unknown_guests_are_listed(tmp_path, sqlite_rolled_back_db):
    stray = str(uuid_lib.uuid4())
    scenario = seeded(sqlite_rolled_back_db,
                      make_scenario([], [domain(stray, P.RUNNING, name="stray")]))
    conf = make_conf(tmp_path, sqlite_rolled_back_db)
    result = ComputeManager(conf, sqlite_rolled_back_db, make_driver(conf, scenario),
                            noop_firewall()).init_host()
    assert [(d.uuid, d.name) for d in result.unknown_domains] == [(stray, "stray")]


def manager_of_one_running_instance(tmp_path, db) -> tuple[ComputeManager, object]:
    """(manager, fakevirt driver) of this host with one ACTIVE instance `U` whose guest runs;
    init_host not yet called."""
    scenario = seeded(db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE)], [domain(U, P.RUNNING)]))
    conf = make_conf(tmp_path, db)
    driver = make_driver(conf, scenario)
    return ComputeManager(conf, db, driver, noop_firewall()), driver


def test_lifecycle_event_updates_power_state(tmp_path, sqlite_db):
    manager, driver = manager_of_one_running_instance(tmp_path, sqlite_db)
    manager.init_host()
    try:
        driver.set_power_state(U, P.SHUTDOWN, Transition.STOPPED)
        assert wait_for(lambda: instance_row(sqlite_db, U).power_state == P.SHUTDOWN)
        # vm_state is left for an operator: there is no compute API here.
        assert instance_row(sqlite_db, U).vm_state == s.ACTIVE
    finally:
        manager.stop()


def test_lifecycle_event_waits_while_an_operation_holds_the_instance(tmp_path, sqlite_db):
    """An event for an instance under an operation's lock is handled once the lock is free
    (the operation saves the power state itself): nothing is read or written meanwhile."""
    manager, driver = manager_of_one_running_instance(tmp_path, sqlite_db)
    manager.init_host()
    manager.stop()  # handle events by hand below
    driver.set_power_state(U, P.SHUTDOWN)
    with manager.locks.lock(U):
        manager.power_sync.on_event(LifecycleEvent(U, Transition.STOPPED, 0.0))
        with count_statements(sqlite_db.engine) as counter:
            assert manager.power_sync.process_pending() == 0
        assert counter.statements == 0
        assert instance_row(sqlite_db, U).power_state == P.RUNNING
    assert manager.power_sync.process_pending() == 1
    assert instance_row(sqlite_db, U).power_state == P.SHUTDOWN


def test_lifecycle_event_held_by_a_lock_is_applied_once_the_lock_is_free(tmp_path, sqlite_db):
    """The event worker, finding the instance locked, keeps the event and tries it again on
    its own: released, the lock lets the power state through with no further event."""
    manager, driver = manager_of_one_running_instance(tmp_path, sqlite_db)
    manager.init_host()
    try:
        with manager.locks.lock(U):
            driver.set_power_state(U, P.SHUTDOWN, Transition.STOPPED)
        assert wait_for(lambda: instance_row(sqlite_db, U).power_state == P.SHUTDOWN)
    finally:
        manager.stop()


def test_stale_lifecycle_event_is_dropped(tmp_path, sqlite_db):
    manager, _ = manager_of_one_running_instance(tmp_path, sqlite_db)
    manager.init_host()
    manager.stop()  # handle events by hand below
    # The database holds an older state; the guest says RUNNING; an old STOPPED event arrives
    # late. Applied, it would write what the guest says; dropped, the row is left alone.
    with sqlite_db.begin() as conn:
        conn.execute(update(Instance).where(Instance.uuid == U)
                     .values(power_state=int(P.SHUTDOWN)))
    manager.power_sync.on_event(LifecycleEvent(U, Transition.STOPPED, 0.0))
    assert manager.power_sync.process_pending() == 0
    assert instance_row(sqlite_db, U).power_state == P.SHUTDOWN


def test_sync_power_states_copies_hypervisor_state(tmp_path, sqlite_rolled_back_db):
    other, missing = str(uuid_lib.uuid4()), str(uuid_lib.uuid4())
    scenario = seeded(sqlite_rolled_back_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE),
         InstanceSeed(other, host=HOST, node=HOST, vm_state=s.ACTIVE,
                        task_state=s.POWERING_OFF),
         InstanceSeed(missing, host=HOST, node=HOST, vm_state=s.ACTIVE)],
        [domain(U, P.CRASHED), domain(other, P.SHUTDOWN)]))
    conf = make_conf(tmp_path, sqlite_rolled_back_db)
    manager = ComputeManager(conf, sqlite_rolled_back_db, make_driver(conf, scenario),
                             noop_firewall())
    assert manager.sync_power_states() == 2
    assert instance_row(sqlite_rolled_back_db, U).power_state == P.CRASHED
    assert instance_row(sqlite_rolled_back_db, missing).power_state == P.NOSTATE
    # An instance with a task in flight is not touched.
    assert instance_row(sqlite_rolled_back_db, other).power_state == P.RUNNING


def test_repeating_mismatch_is_logged_once_until_it_clears(tmp_path, sqlite_rolled_back_db,
                                                           caplog):
    scenario = seeded(sqlite_rolled_back_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE)], [domain(U, P.RUNNING)]))
    conf = make_conf(tmp_path, sqlite_rolled_back_db)
    driver = make_driver(conf, scenario)
    manager = ComputeManager(conf, sqlite_rolled_back_db, driver, noop_firewall())
    driver.set_power_state(U, P.SHUTDOWN)
    caplog.set_level("INFO", logger="agent.compute.power_sync")
    for _ in range(3):
        manager.sync_power_states()
    warnings = [r for r in caplog.records if "database says active" in r.getMessage()]
    assert len(warnings) == 1
    driver.set_power_state(U, P.RUNNING)
    manager.sync_power_states()
    assert any("agree again" in r.getMessage() for r in caplog.records)



def test_mismatch_of_an_instance_that_left_and_came_back_is_warned_again(tmp_path, sqlite_db,
                                                                         caplog):
    """The warning memory holds only this host's instances: one that leaves (evacuated away)
    is forgotten, so when it comes back with the same mismatch the operator hears of it again."""
    manager, driver = manager_of_one_running_instance(tmp_path, sqlite_db)
    driver.set_power_state(U, P.SHUTDOWN)
    caplog.set_level("WARNING", logger="agent.compute.power_sync")

    def move_to(host):
        with sqlite_db.engine.begin() as conn:
            conn.execute(update(Instance).where(Instance.uuid == U).values(host=host))

    manager.sync_power_states()
    move_to("elsewhere")
    manager.sync_power_states()
    move_to(HOST)
    manager.sync_power_states()
    warnings = [r for r in caplog.records if "database says active" in r.getMessage()]
    assert len(warnings) == 2

# -- the firewall: one restore per family for the whole init_host (real iptables, netns) --------
from tests.functional.netns import make_firewall, restores, save  # noqa: E402


@pytest.mark.netns
def test_init_host_applies_the_firewall_once(tmp_path, sqlite_db, executor):

    from fakevirt.scenario import generate_scenario

    scenario = generate_scenario(40, hostname=HOST)  # 7 in 10 guests running, 1 paused
    seed_scenario = seeded(sqlite_db, scenario)
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, seed_scenario)
    firewall = make_firewall(executor)
    manager = ComputeManager(conf, sqlite_db, driver, firewall)
    try:
        manager.init_host()
    finally:
        manager.stop()
    assert (restores(executor, 4), restores(executor, 6)) == (1, 1)
    running = [d for d in scenario.domains if d.power_state in (P.RUNNING, P.PAUSED)]
    v4 = save(executor, 4)
    jumps = [line for line in v4 if line.startswith("-A cagent-fwd -d 10.")]
    assert len(jumps) == len(running)
    # A restart after one running instance was deleted: its chain goes, in one more restore.
    gone = running[0]
    with sqlite_db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == gone.uuid)
                        .values(deleted=Instance.id))
    executor.clear()
    manager = ComputeManager(conf, sqlite_db, driver, firewall)
    try:
        manager.init_host()
    finally:
        manager.stop()
    assert restores(executor, 4) == 1
    jumps = [line for line in save(executor, 4) if line.startswith("-A cagent-fwd -d 10.")]
    assert len(jumps) == len(running) - 1


def test_failed_firewall_apply_still_saves_the_driver_work(tmp_path, sqlite_db):
    from agent.errors import FirewallError
    from agent.network.executor import SubprocessExecutor
    from agent.network.firewall import IptablesFirewall
    from agent.network.iptables import IptablesManager

    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.STOPPED, task_state=s.POWERING_ON,
                        power_state=P.SHUTDOWN)], [domain(U, P.SHUTDOWN)]))
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, scenario)
    # Every iptables command fails for real (run through /bin/false).
    firewall = IptablesFirewall(IptablesManager("cagent", SubprocessExecutor(["false"])))
    manager = ComputeManager(conf, sqlite_db, driver, firewall)
    try:
        with pytest.raises(FirewallError):
            manager.init_host()
    finally:
        manager.stop()
    assert guest_power(driver, U) == P.RUNNING
    row = instance_row(sqlite_db, U)
    assert (row.vm_state, row.task_state, row.power_state) == (s.ACTIVE, None, P.RUNNING)


def test_bad_network_info_is_reported_once_and_the_instance_still_initialized(
        tmp_path, sqlite_db, caplog):
    # A running instance's steps (plug vifs, firewall) all need its VIFs: a network_info that
    # cannot be used is one error for the instance, not one per step.
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE)], [domain(U, P.RUNNING)]))
    with sqlite_db.begin() as conn:
        conn.execute(update(Instance).where(Instance.uuid == U)
                     .values(network_info='[{"id": "port-1", "fixed_ips": "not a list"}]'))
    conf = make_conf(tmp_path, sqlite_db)
    manager = ComputeManager(conf, sqlite_db, make_driver(conf, scenario), noop_firewall())
    try:
        result = manager.init_host()
    finally:
        manager.stop()
    errors = [r for r in caplog.records if "left as they were" in r.getMessage()]
    assert len(errors) == 1 and U in errors[0].getMessage()
    assert [(o.uuid, o.error) for o in result.instances] == [(U, None)]
