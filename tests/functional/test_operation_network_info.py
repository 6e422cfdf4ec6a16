"""An RPC operation on an instance whose network_info cannot be used: the operation still ends
as nova's, and the bad network_info is logged naming the instance, as start-up logs it."""

from __future__ import annotations

from sqlalchemy import update

from agent import vocabulary as s
from agent.compute.operations import InstanceOperations
from agent.context import RequestContext
from agent.db.models import Instance
from agent.virt.types import PowerState as P
from fakevirt.scenario import InstanceSeed
from tests.functional.compute_helpers import (HOST, guest_power, instance_row,
                                              make_conf, make_driver, make_scenario,
                                              noop_firewall, seeded)

U = "22222222-2222-4222-8222-222222222222"


def test_build_with_bad_network_info_spawns_the_guest_and_says_why_it_has_no_vifs(
        tmp_path, sqlite_db, caplog):
    scenario = seeded(sqlite_db, make_scenario(
        [InstanceSeed(U, host=HOST, node=HOST, vm_state=s.BUILDING, task_state=s.SCHEDULING)],
        []))
    with sqlite_db.engine.begin() as conn:
        conn.execute(update(Instance).where(Instance.uuid == U)
                     .values(network_info='[{"id": "port-1", "fixed_ips": "not a list"}]'))
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, scenario)
    ops = InstanceOperations(sqlite_db, driver, noop_firewall(), HOST)
    ops.build_and_run_instance(RequestContext.new(), {"uuid": U})
    row = instance_row(sqlite_db, U)
    assert (row.vm_state, row.task_state, row.power_state) == (s.ACTIVE, None, P.RUNNING)
    assert guest_power(driver, U) == P.RUNNING
    errors = [r.getMessage() for r in caplog.records if "left as they were" in r.getMessage()]
    assert len(errors) == 1 and U in errors[0], caplog.text


# -- the guest's rules follow it through operations (real iptables, netns) ----------------------
import pytest  # noqa: E402

from tests.functional.netns import make_firewall, save  # noqa: E402


def _jumps(executor) -> list[str]:
    return [line for line in save(executor, 4) if line.startswith("-A cagent-fwd -d ")]


@pytest.mark.netns
def test_operations_keep_the_guests_rules_while_it_runs_and_only_then(tmp_path, sqlite_db,
                                                                      executor, monkeypatch):
    """stop removes the guest's rules, start brings them back; a failed hard reboot that leaves
    the guest shut off removes them too (rules follow the guest, not the row)."""
    from fakevirt.scenario import generate_scenario

    scenario = generate_scenario(10, hostname=HOST)
    seed = seeded(sqlite_db, scenario)
    target = next(d.uuid for d in scenario.domains if d.power_state == P.RUNNING)
    conf = make_conf(tmp_path, sqlite_db)
    driver = make_driver(conf, seed)
    ops = InstanceOperations(sqlite_db, driver, make_firewall(executor), HOST)

    def act(method, task_state, **args):
        with sqlite_db.engine.begin() as conn:
            conn.execute(update(Instance).where(Instance.uuid == target)
                         .values(task_state=task_state))
        getattr(ops, method)(RequestContext.new(), {"uuid": target}, **args)

    act("stop_instance", s.POWERING_OFF)
    assert _jumps(executor) == []
    act("start_instance", s.POWERING_ON)
    assert len(_jumps(executor)) == 1

    def reboot_fails(ref, reboot_type):
        driver.set_power_state(ref.uuid, P.SHUTDOWN)
        raise RuntimeError("the hypervisor lost the guest's reboot")

    monkeypatch.setattr(driver, "reboot", reboot_fails)  # a fault no real part gives on demand
    with pytest.raises(RuntimeError):
        act("reboot_instance", s.REBOOTING_HARD, reboot_type="HARD")
    assert _jumps(executor) == []
    assert instance_row(sqlite_db, target).vm_state == s.ERROR
