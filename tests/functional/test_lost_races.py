"""Every writer of instance and migration rows loses a race on purpose and reports it: the row
another host (or an operation) changed is not overwritten, the guest is left alone when the
change is seen before acting, and the log names the instance and what changed."""

from __future__ import annotations

import contextlib
import uuid as uuid_lib

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine

from agent import vocabulary as s
from agent.cli import main
from agent.compute.manager import LOST_RACE, ComputeManager
from agent.compute.operations import InstanceOperations
from agent.compute.ownership import RECHECK_AFTER
from agent.context import RequestContext
from agent.db.models import Instance, Migration
from agent.virt.types import LifecycleEvent, PowerState as P, Transition
from fakevirt.scenario import InstanceSeed, MigrationSeed
from tests.functional.compute_helpers import (GONE, HOST, domain, guest_power, instance_row,
                                              make_conf, make_driver, make_scenario,
                                              migration_row, noop_firewall, seeded)
from tests.functional.test_evacuate_cmd import add_host, set_service

A, B, C = (str(uuid_lib.uuid5(uuid_lib.NAMESPACE_URL, f"lost-race/{n}")) for n in "abc")


def move(db, uuid: str, **values) -> None:
    """Another host's (or an operator's) committed change to one instance row."""
    values = values or {"host": "dst", "node": "dst"}
    with db.engine.begin() as conn:
        conn.execute(update(Instance).where(Instance.uuid == uuid).values(**values))


def row_state(db, uuid: str) -> tuple:
    row = instance_row(db, uuid)
    return row.host, row.vm_state, row.task_state, row.power_state


@contextlib.contextmanager
def before_the_save_locks(db, change):
    """Run `change` once, just before the next conditional save takes its locks (SQLite:
    BEGIN IMMEDIATE; servers: the SELECT ... FOR UPDATE; `save_row`, an operation's: its
    guarded UPDATE): a change committed between a writer's read and its save."""
    done: list[bool] = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if not done and ("BEGIN IMMEDIATE" in statement or "FOR UPDATE" in statement
                         or statement.startswith("UPDATE instances ")):
            done.append(True)
            change()

    event.listen(db.engine, "before_cursor_execute", hook)
    try:
        yield done
    finally:
        event.remove(db.engine, "before_cursor_execute", hook)


def powering_off_host(tmp_path, db, **manager_options):
    scenario = seeded(db, make_scenario(
        [InstanceSeed(u, host=HOST, node=HOST, vm_state=s.ACTIVE, task_state=s.POWERING_OFF)
         for u in (A, B, C)], [domain(u, P.RUNNING) for u in (A, B, C)]))
    conf = make_conf(tmp_path, db)
    driver = make_driver(conf, scenario)
    return ComputeManager(conf, db, driver, noop_firewall(), **manager_options), driver


@pytest.mark.parametrize("moved_at, writer, b_guest", [
    # B is evacuated while init_host still reads the guests: seen before any action, so its
    # guest is left alone.
    pytest.param("get_info", "init_host (guest left alone)", P.RUNNING, id="before-acting"),
    # B is evacuated after init_host re-read it, while its guest is being powered off (it was
    # this host's then): the save loses.
    pytest.param("power_off", "init_host", P.SHUTDOWN, id="while-acting"),
])
def test_init_host_does_not_write_a_row_moved_meanwhile(tmp_path, any_db, caplog, moved_at,
                                                        writer, b_guest):
    manager, driver = powering_off_host(tmp_path, any_db)
    driver.faults.call_before(moved_at, lambda: move(any_db, B), instance_uuid=B)
    caplog.set_level("WARNING", logger="agent.compute.manager")
    result = run_init_host(manager)
    actions = {o.uuid: (o.action, o.error) for o in result.instances}
    assert actions[A][0] == actions[C][0] == "powered-off"
    assert actions[B] == (LOST_RACE, f"host is now 'dst' (read '{HOST}')")
    assert guest_power(driver, B) == b_guest
    assert row_state(any_db, B) == ("dst", s.ACTIVE, s.POWERING_OFF, P.RUNNING)  # not ours
    assert row_state(any_db, C) == (HOST, s.STOPPED, None, P.SHUTDOWN)
    assert (f"{writer} on host {HOST} lost a race for {B}: host is now 'dst' "
            f"(read '{HOST}'); not saved") in caplog.text


def run_init_host(manager):
    try:
        return manager.init_host()
    finally:
        manager.stop()


def test_init_host_rereads_ownership_when_acting_takes_long(tmp_path, sqlite_db):
    """While B's guest takes long to power off, C is evacuated: the next action re-reads
    ownership first (RECHECK_AFTER seconds passed) and leaves C's guest alone."""
    now = [0.0]
    manager, driver = powering_off_host(tmp_path, sqlite_db, clock=lambda: now[0])

    def slow_power_off_meanwhile_c_moves():
        move(sqlite_db, C)
        now[0] += RECHECK_AFTER

    driver.faults.call_before("power_off", slow_power_off_meanwhile_c_moves, instance_uuid=B)
    result = run_init_host(manager)
    assert {o.uuid: o.action for o in result.instances} == {
        A: "powered-off", B: "powered-off", C: LOST_RACE}
    assert guest_power(driver, C) == P.RUNNING
    assert row_state(sqlite_db, C) == ("dst", s.ACTIVE, s.POWERING_OFF, P.RUNNING)


def test_init_host_migration_save_lost_is_reported(tmp_path, sqlite_db, caplog):
    mig = str(uuid_lib.uuid4())
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(A, host="dst", node="dst", vm_state=s.ACTIVE)], [domain(A, P.RUNNING)],
        [MigrationSeed(mig, A, "evacuation", "done", HOST, "dst", HOST, "dst")]))
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, scenario)
    migration_id = migration_row(sqlite_db, mig).id

    def operator_fails_it():
        with sqlite_db.engine.begin() as conn:
            conn.execute(update(Migration).where(Migration.uuid == mig).values(status="error"))

    driver.faults.call_before("destroy", operator_fails_it, instance_uuid=A)
    caplog.set_level("WARNING", logger="agent.compute.manager")
    run_init_host(ComputeManager(conf, sqlite_db, driver, noop_firewall()))
    assert guest_power(driver, A) == GONE
    assert migration_row(sqlite_db, mig).status == "error"
    assert (f"init_host on host {HOST} lost a race for migration {migration_id}: status is "
            "now 'error' (read 'done'); not saved") in caplog.text


def test_power_state_sync_lost_race_is_reported(tmp_path, any_db, caplog):
    scenario = seeded(any_db, make_scenario(
        [InstanceSeed(A, host=HOST, node=HOST, vm_state=s.ACTIVE),
         InstanceSeed(B, host=HOST, node=HOST, vm_state=s.ACTIVE)],
        [domain(A, P.SHUTDOWN), domain(B, P.SHUTDOWN)]))
    conf = make_conf(tmp_path, any_db)
    manager = ComputeManager(conf, any_db, make_driver(conf, scenario), noop_firewall())
    caplog.set_level("WARNING", logger="agent.compute.power_sync")
    with before_the_save_locks(any_db, lambda: move(any_db, B)) as done:
        assert manager.sync_power_states() == 1
    assert done
    assert row_state(any_db, A) == (HOST, s.ACTIVE, None, P.SHUTDOWN)
    assert row_state(any_db, B) == ("dst", s.ACTIVE, None, P.RUNNING)
    assert (f"power-state sync on host {HOST} lost a race for {B}: host is now 'dst' "
            f"(read '{HOST}'); not saved") in caplog.text


def test_lifecycle_event_lost_race_is_reported(tmp_path, sqlite_db, caplog):
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(A, host=HOST, node=HOST, vm_state=s.ACTIVE)], [domain(A, P.RUNNING)]))
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, scenario)
    manager = ComputeManager(conf, sqlite_db, driver, noop_firewall())
    driver.set_power_state(A, P.SHUTDOWN)
    manager.power_sync.on_event(LifecycleEvent(A, Transition.STOPPED, 0.0))
    caplog.set_level("WARNING", logger="agent.compute.power_sync")
    # An operation starts on A between the event's read and its save.
    with before_the_save_locks(sqlite_db, lambda: move(sqlite_db, A,
                                                       task_state=s.POWERING_ON)):
        assert manager.power_sync.process_pending() == 0
    assert row_state(sqlite_db, A) == (HOST, s.ACTIVE, s.POWERING_ON, P.RUNNING)
    assert (f"power-state event on host {HOST} lost a race for {A}: task_state is now "
            "'powering-on' (read None); not saved") in caplog.text


def test_operation_outcome_lost_race_is_reported(tmp_path, any_db, caplog):
    """An RPC stop whose row moves to another host while the driver works: the guest is
    stopped here, the row (now the other host's) is not overwritten, and the log says so."""
    scenario = seeded(any_db, make_scenario(
        [InstanceSeed(A, host=HOST, node=HOST, vm_state=s.ACTIVE, task_state=s.POWERING_OFF)],
        [domain(A, P.RUNNING)]))
    driver = make_driver(make_conf(tmp_path, any_db), scenario)
    ops = InstanceOperations(any_db, driver, noop_firewall(), HOST)
    caplog.set_level("WARNING", logger="agent.compute.operations")
    with before_the_save_locks(any_db, lambda: move(any_db, A)) as done:
        ops.stop_instance(RequestContext.new(), {"uuid": A})
    assert done
    assert guest_power(driver, A) == P.SHUTDOWN
    assert row_state(any_db, A) == ("dst", s.ACTIVE, s.POWERING_OFF, P.RUNNING)
    assert (f"instance {A}: outcome not saved, the row changed meanwhile: host is now 'dst' "
            f"(read '{HOST}')") in caplog.text


def test_evacuate_does_not_move_a_row_changed_after_it_was_read(sqlite_url, sqlite_db,
                                                                capsys):
    """SQLite has no row locks: evacuate's read and its save are apart, and an instance
    paused in between is not moved and has no record."""
    add_host(sqlite_db, "src", node="src-node")
    add_host(sqlite_db, "dst", node="dst-node")
    set_service(sqlite_db, "src", forced_down=True)
    with sqlite_db.sessions.begin() as session:
        rows = [Instance(uuid=u, host="src", node="src-node", vm_state=s.ACTIVE, deleted=0)
                for u in (A, B)]
        session.add_all(rows)
    changed: list[bool] = []  # the CLI builds its own engine: the hook is on every engine

    def hook(conn, cursor, statement, parameters, context, executemany):
        if not changed and "BEGIN IMMEDIATE" in statement:
            changed.append(True)
            move(sqlite_db, B, vm_state=s.PAUSED)

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        status = main(["evacuate", "--host", "src", "--to", "dst", "--db", sqlite_url])
    finally:
        event.remove(Engine, "before_cursor_execute", hook)
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"instance {B} changed while evacuating (vm_state is now 'paused' (read " \
        "'active')): not moved" in out
    with sqlite_db.sessions() as session:
        assert dict(session.execute(select(Instance.uuid, Instance.host)).all()) == {
            A: "dst", B: "src"}
        assert list(session.scalars(select(Migration.instance_uuid))) == [A]
