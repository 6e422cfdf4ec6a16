"""Firewall rules after a restart, in the kernel (real iptables-restore in a private network
namespace): every guest that runs when start-up ends has its rules, whatever row of the
_init_instance table it took; a guest that is off has none; a second start-up does not take
rules away from a guest that ran the whole time."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from agent import vocabulary as s
from agent.compute.manager import ComputeManager
from agent.db.models import Instance
from agent.virt.types import VIF, FixedIP, PowerState as P, SecurityGroupRule, Transition
from fakevirt.scenario import InstanceSeed
from tests.agent_process import wait_for
from tests.functional.compute_helpers import (HOST, domain, guest_power, instance_row,
                                              make_conf, make_driver, make_scenario, seeded)
from tests.functional.netns import make_firewall, save

pytestmark = pytest.mark.netns

# id, vm_state, task_state, database power, guest power, old_vm_state, injected driver fault,
# host, -> the action taken, whether the guest has its rules afterwards
ROWS = [
    # every row of the table that ends with the guest running
    ("running", s.ACTIVE, None, P.RUNNING, P.RUNNING, None, None, HOST, "none", True),
    ("powering-on", s.STOPPED, s.POWERING_ON, P.SHUTDOWN, P.SHUTDOWN, None, None, HOST,
     "powered-on", True),
    ("reboot-started-guest-off", s.ACTIVE, s.REBOOT_STARTED, P.RUNNING, P.SHUTDOWN, None, None,
     HOST, "rebooted-hard", True),
    ("reboot-pending-guest-running", s.ACTIVE, s.REBOOT_PENDING, P.RUNNING, P.RUNNING, None,
     None, HOST, "rebooted-soft", True),
    ("reboot-pending-hard-stopped", s.STOPPED, s.REBOOT_PENDING_HARD, P.SHUTDOWN, P.SHUTDOWN,
     None, None, HOST, "rebooted-hard", True),
    ("resize-migrating", s.ACTIVE, s.RESIZE_MIGRATING, P.SHUTDOWN, P.SHUTDOWN, s.ACTIVE, None,
     HOST, "reverted-resize", True),
    ("unpausing", s.PAUSED, s.UNPAUSING, P.PAUSED, P.PAUSED, None, None, HOST, "unpaused", True),
    ("rebooting-finished", s.ACTIVE, s.REBOOTING, P.RUNNING, P.RUNNING, None, None, HOST,
     "cleared-task", True),
    ("snapshot", s.ACTIVE, s.IMAGE_UPLOADING, P.RUNNING, P.RUNNING, None, None, HOST,
     "cleared-task", True),
    ("resize-prep", s.ACTIVE, s.RESIZE_PREP, P.RUNNING, P.RUNNING, None, None, HOST,
     "cleared-task", True),
    ("migrating", s.ACTIVE, s.MIGRATING, P.RUNNING, P.RUNNING, None, None, HOST,
     "aborted-migration", True),
    ("resumed", s.ACTIVE, None, P.RUNNING, P.SHUTDOWN, None, None, HOST, "resumed", True),
    ("other-task", s.ACTIVE, s.SUSPENDING, P.RUNNING, P.RUNNING, None, None, HOST, "none", True),
    ("error-guest-running", s.ERROR, None, P.RUNNING, P.RUNNING, None, None, HOST, "skipped",
     True),
    ("delete-failed-guest-running", s.ACTIVE, s.DELETING, P.RUNNING, P.RUNNING, None,
     "destroy", HOST, "failed", True),
    ("unpause-failed-guest-paused", s.PAUSED, s.UNPAUSING, P.PAUSED, P.PAUSED, None, "unpause",
     HOST, "failed", True),
    ("paused", s.PAUSED, None, P.PAUSED, P.PAUSED, None, None, HOST, "none", True),
    # rows that end with the guest off or gone, or that are not this host's
    ("stopped", s.STOPPED, None, P.SHUTDOWN, P.SHUTDOWN, None, None, HOST, "none", False),
    ("powering-off", s.ACTIVE, s.POWERING_OFF, P.RUNNING, P.RUNNING, None, None, HOST,
     "powered-off", False),
    ("power-on-failed", s.STOPPED, s.POWERING_ON, P.SHUTDOWN, P.SHUTDOWN, None, "power_on",
     HOST, "failed", False),
    ("revert-resize-stopped", s.STOPPED, s.RESIZE_MIGRATING, P.SHUTDOWN, P.SHUTDOWN, s.STOPPED,
     None, HOST, "reverted-resize", False),
    ("deleting", s.ACTIVE, s.DELETING, P.RUNNING, P.RUNNING, None, None, HOST, "deleted", False),
    ("crashed", s.ACTIVE, None, P.CRASHED, P.CRASHED, None, None, HOST, "none", False),
    ("other-host", s.ACTIVE, None, P.RUNNING, P.RUNNING, None, None, "elsewhere",
     "skipped-other-host", False),
]
PORT = 1000  # instance i accepts tcp PORT + i from anywhere: its one rule


def uuid_of(i: int) -> str:
    return f"5ec00000-0000-4000-8000-{i:012d}"


def vif_of(i: int) -> VIF:
    return VIF(f"port-{i}", f"fa:16:3e:00:01:{i:02x}", (FixedIP(f"10.0.1.{i + 10}", 4),),
               (SecurityGroupRule("tcp", PORT + i, PORT + i, None, 4),))


def filtered(executor) -> dict[str, bool]:
    """Per IPv4 address jumped to from our top chain: whether its chain holds its one rule."""
    v4 = save(executor, 4)
    out = {}
    for line in v4:
        if line.startswith("-A cagent-fwd -d "):
            address, chain = line.split()[3].split("/")[0], line.split()[-1]
            i = int(address.rsplit(".", 1)[1]) - 10
            out[address] = f"-A {chain} -p tcp -m tcp --dport {PORT + i} -j ACCEPT" in v4
    return out


def seed_rows(db):
    for i, (_id, vm, task, db_power, _guest, old_vm, _fault, host, _a, _r) in enumerate(ROWS):
        with db.engine.begin() as conn:
            conn.execute(update(Instance).where(Instance.uuid == uuid_of(i)).values(
                vm_state=vm, task_state=task, power_state=int(db_power), old_vm_state=old_vm,
                host=host))


def start(conf, db, driver, executor):
    manager = ComputeManager(conf, db, driver, make_firewall(executor))
    try:
        return {o.uuid: o.action for o in manager.init_host().instances}
    finally:
        manager.stop()


def test_every_guest_running_after_start_up_has_its_rules(tmp_path, sqlite_db, executor):
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(uuid_of(i), display_name=row[0], host=row[7], node=row[7],
                        vm_state=row[1], task_state=row[2], power_state=row[3],
                        old_vm_state=row[5], network_info=(vif_of(i),))
         for i, row in enumerate(ROWS)],
        [domain(uuid_of(i), row[4], name=f"instance-{i}") for i, row in enumerate(ROWS)]))
    conf = make_conf(tmp_path, sqlite_db, resume_guests_state_on_host_boot=True)
    driver = make_driver(conf, scenario)
    for i, row in enumerate(ROWS):
        if row[6]:
            driver.faults.fail(row[6], uuid_of(i))
    wanted = {f"10.0.1.{i + 10}": True for i, row in enumerate(ROWS) if row[9]}

    actions = start(conf, sqlite_db, driver, executor)
    assert actions == {uuid_of(i): row[8] for i, row in enumerate(ROWS)}
    assert filtered(executor) == wanted
    # What a user notices: no guest runs here without its rules.
    running = {f"10.0.1.{i + 10}" for i in range(len(ROWS))
               if guest_power(driver, uuid_of(i)) == P.RUNNING and ROWS[i][7] == HOST}
    assert running and running <= set(wanted)

    # A second start-up, by a new process (a new firewall model) over the rules the first
    # left in the kernel, with every row interrupted the same way again: the guests that ran
    # the whole time keep their rules, the others get theirs again.
    ran_whole_time = {f"10.0.1.{i + 10}" for i, row in enumerate(ROWS)
                      if row[4] == P.RUNNING and row[9]}
    seed_rows(sqlite_db)
    for i, row in enumerate(ROWS):
        if row[8] == "deleted":  # the first start-up finished this delete for good
            assert instance_row(sqlite_db, uuid_of(i)).deleted
    start(conf, sqlite_db, driver, executor)
    after = filtered(executor)
    assert {a for a, ok in after.items() if ok} >= ran_whole_time
    assert after == wanted


def plain_host(tmp_path, db, count, vm_state, power):
    """`count` instances with no task, their guests in `power`: (conf, driver)."""
    scenario = seeded(db, make_scenario(
        [InstanceSeed(uuid_of(i), host=HOST, node=HOST, vm_state=vm_state, power_state=power,
                        network_info=(vif_of(i),)) for i in range(count)],
        [domain(uuid_of(i), power, name=f"instance-{i}") for i in range(count)]))
    conf = make_conf(tmp_path, db)
    return conf, make_driver(conf, scenario)


def test_running_guest_with_unusable_network_info_keeps_its_rules_over_a_restart(
        tmp_path, sqlite_db, executor, caplog):
    # Its rules cannot be rebuilt, and dropping them would leave a running guest unfiltered:
    # the new process carries over what the kernel holds for it, found by its uuid.
    conf, driver = plain_host(tmp_path, sqlite_db, 3, s.ACTIVE, P.RUNNING)
    start(conf, sqlite_db, driver, executor)
    before = [line for line in save(executor, 4) if "cagent-" in line]
    assert set(filtered(executor)) == {"10.0.1.10", "10.0.1.11", "10.0.1.12"}

    for i in range(3):
        with sqlite_db.engine.begin() as conn:
            conn.execute(update(Instance).where(Instance.uuid == uuid_of(i))
                         .values(network_info=f'[{{"id": "port-{i}", "fixed_ips": "no list"}}]'))
    driver.set_power_state(uuid_of(2), P.SHUTDOWN)  # and one guest is now off
    executor.clear()
    actions = start(conf, sqlite_db, driver, executor)
    assert actions[uuid_of(0)] == actions[uuid_of(1)] == "none"
    # the kernel is read once for all such instances, then once more by the one apply
    assert executor.count(executor.tools[4][0]) == 2
    assert f"instance {uuid_of(0)}: network_info [0]" in caplog.text
    assert "left as they were" in caplog.text
    assert filtered(executor) == {"10.0.1.10": True, "10.0.1.11": True}  # none for the off one
    (gone,) = [line.split()[-1] for line in before
               if line.startswith("-A cagent-fwd -d 10.0.1.12/")]
    after = [line for line in save(executor, 4) if "cagent-" in line]
    assert after == [line for line in before if gone not in line]


def test_guest_started_after_start_up_gets_its_rules(tmp_path, sqlite_db, executor):
    # Started outside start-up (virsh start, a resume): the lifecycle event, or the periodic
    # sync when there is no event, gives it its rules before its power state is saved.
    conf, driver = plain_host(tmp_path, sqlite_db, 2, s.STOPPED, P.SHUTDOWN)
    manager = ComputeManager(conf, sqlite_db, driver, make_firewall(executor))
    try:
        manager.init_host()
        assert filtered(executor) == {}  # nothing runs
        driver.set_power_state(uuid_of(0), P.RUNNING, Transition.STARTED)
        assert wait_for(lambda: instance_row(sqlite_db, uuid_of(0)).power_state == P.RUNNING)
        assert filtered(executor) == {"10.0.1.10": True}
        driver.set_power_state(uuid_of(1), P.PAUSED)  # no event: the periodic sync sees it
        assert manager.sync_power_states() == 1
        assert filtered(executor) == {"10.0.1.10": True, "10.0.1.11": True}
    finally:
        manager.stop()
