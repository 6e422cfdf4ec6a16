"""Every compute RPC operation with the agent killed in the middle of it and started again,
against real agent processes on fakevirt and a real RabbitMQ: one parametrized body over a table
of operations, each killed at two points, before the hypervisor acted and after it acted but
before the outcome was saved. The hypervisor outlives the agent ([fakevirt] domains_file, as a
real one outlives nova-compute), so the guests after the restart are counted exactly.

What the restarted agent must reach is nova's (reference: nova-semantics.md section 4, the
`_init_instance` table, rows cited per case): init_host finishes or reverts the interrupted
task, then the request the dead agent never acknowledged comes again and is ignored when the
task is settled, or finishes it when init_host leaves it in flight (a pause whose guest is
already paused: nova's table leaves the task_state; the redelivered request completes it). No
guest is lost or duplicated, and the host's queue ends empty."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update

from agent import vocabulary as states
from agent.context import RequestContext
from agent.db.engine import make_database
from agent.db.models import Instance
from agent.rpc.client import RpcClient
from agent.rpc.transport import parse
from agent.virt.types import PowerState as P
from tests.agent_process import agent_command, wait_for, write_config
from tests.e2e.test_rpc_faults import create_vhost, start_agent, vhost  # noqa: F401
from tests.rabbit import rabbitmqctl, unique_host

G1 = "7e1d2b63-9b4f-4a68-8b1f-00000000002b"
GONE = "gone"  # no guest on the hypervisor


@dataclass(frozen=True)
class Final:
    """The instance and its guest once the restarted agent is done: vm_state, task_state,
    power_state (None: not asserted, the power sync may still be copying it), the guest's
    power state in the hypervisor (GONE: no guest), and whether the row is deleted."""
    vm_state: str
    task_state: str | None
    power_state: P | None
    guest: P | str
    deleted: bool = False


@dataclass(frozen=True)
class Case:
    method: str
    args: dict
    vm_state: str  # the row as the API left it before the cast
    task_state: str
    guest: str | None  # the guest's power word before the cast; None: no guest here
    driver_call: str  # the fakevirt method the dead agent was in
    killed_before: Final  # killed before the hypervisor acted
    killed_after: Final  # killed after it acted, before the outcome was saved


RUNNING_ACTIVE = Final(states.ACTIVE, None, P.RUNNING, P.RUNNING)
BUILD_ARGS = {"image": {"id": "img-1"}, "request_spec": None, "filter_properties": {},
              "admin_password": None, "injected_files": [], "requested_networks": None,
              "security_groups": None, "block_device_mapping": None, "node": None,
              "limits": {}, "host_list": []}

CASES = {
    # row 4: an interrupted build ends in ERROR; the redelivered build finds it so and does
    # nothing: no second guest.
    "build": Case("build_and_run_instance", BUILD_ARGS, states.BUILDING, states.SCHEDULING,
                  None, "spawn",
                  Final(states.ERROR, None, None, GONE), Final(states.ERROR, None, None,
                                                               P.RUNNING)),
    # row 12: an interrupted power-off is done again.
    "stop": Case("stop_instance", {"clean_shutdown": True}, states.ACTIVE,
                 states.POWERING_OFF, "running", "power_off",
                 Final(states.STOPPED, None, P.SHUTDOWN, P.SHUTDOWN),
                 Final(states.STOPPED, None, P.SHUTDOWN, P.SHUTDOWN)),
    # row 13: an interrupted power-on is done again.
    "start": Case("start_instance", {}, states.STOPPED, states.POWERING_ON, "shutdown",
                  "power_on", RUNNING_ACTIVE, RUNNING_ACTIVE),
    # row 10: a running guest in reboot_started: the task is cleared.
    "reboot-soft": Case("reboot_instance", {"reboot_type": "SOFT", "block_device_info": None},
                        states.ACTIVE, states.REBOOTING, "running", "reboot",
                        RUNNING_ACTIVE, RUNNING_ACTIVE),
    # before: row 9, reboot_started_hard with the guest off is retried HARD; after: row 10.
    "reboot-hard": Case("reboot_instance", {"reboot_type": "HARD", "block_device_info": None},
                        states.STOPPED, states.REBOOTING_HARD, "shutdown", "reboot",
                        RUNNING_ACTIVE, RUNNING_ACTIVE),
    # before: row 10, a running guest in pausing: the task is cleared (the pause is dropped,
    # as nova drops it); after: the guest is paused, no row applies and the task is left
    # pausing, so the redelivered request finishes it.
    "pause": Case("pause_instance", {}, states.ACTIVE, states.PAUSING, "running", "pause",
                  RUNNING_ACTIVE, Final(states.PAUSED, None, P.PAUSED, P.PAUSED)),
    # before: row 11, a paused guest in unpausing is unpaused; after: row 10.
    "unpause": Case("unpause_instance", {}, states.PAUSED, states.UNPAUSING, "paused",
                    "unpause", RUNNING_ACTIVE, RUNNING_ACTIVE),
    # row 8: a delete in flight is completed: the guest destroyed and the row deleted.
    "terminate": Case("terminate_instance", {"bdms": []}, states.ACTIVE, states.DELETING,
                      "running", "destroy",
                      Final(states.DELETED, None, None, GONE, deleted=True),
                      Final(states.DELETED, None, None, GONE, deleted=True)),
    # row 5: an interrupted rebuild (here an evacuation's spawn) ends in ERROR; no second
    # guest from the redelivered request.
    "rebuild-recreate": Case("rebuild_instance",
                             {"recreate": True, "image_ref": "img-1", "orig_image_ref": "img-1",
                              "on_shared_storage": False, "bdms": []},
                             states.ACTIVE, states.REBUILDING, None, "spawn",
                             Final(states.ERROR, None, None, GONE),
                             Final(states.ERROR, None, None, P.RUNNING)),
}


def host_config(tmp_path, host, url, case: Case):
    scenario = tmp_path / "scenario.toml"
    lines = ["[host]", f'hostname = "{host}"', "vcpus = 4", "memory_mb = 8192",
             "local_gb = 50", ""]
    if case.guest is not None:
        lines += ["[[domains]]", f'uuid = "{G1}"', 'name = "g1"',
                  f'power_state = "{case.guest}"', ""]
    # Seeded settled (start-up leaves it alone: a guest in its state, or in error without
    # one); the API's states are saved once the agent is up, as the control plane saves them.
    settled_vm = case.vm_state if case.guest is not None else states.ERROR
    lines += ["[[instances]]", f'uuid = "{G1}"', 'display_name = "g1"',
              f'vm_state = "{settled_vm}"', ""]
    scenario.write_text("\n".join(lines), encoding="utf-8")
    config = write_config(tmp_path, host=host, transport_url=url, scenario=scenario)
    with open(config, "a", encoding="utf-8") as f:  # [fakevirt] is the file's last section
        f.write(f"domains_file = {tmp_path / 'domains.json'}\n")
    seeded = agent_command("db", "seed", str(scenario), "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    return config


def guests(tmp_path) -> dict[str, P]:
    """The hypervisor's guests as the domains file holds them: uuid -> power state."""
    state = json.loads((tmp_path / "domains.json").read_text(encoding="utf-8"))
    return {d["uuid"]: P(d["power_state"]) for d in state["domains"]}


def row(db):
    with db.sessions() as session:
        return session.execute(select(Instance.vm_state, Instance.task_state,
                                      Instance.power_state, Instance.deleted)
                               .where(Instance.uuid == G1)).one()


def settled(db, final: Final) -> bool:
    vm_state, task_state, power_state, deleted = row(db)
    return ((vm_state, task_state) == (final.vm_state, final.task_state)
            and bool(deleted) == final.deleted
            and (final.power_state is None or power_state == final.power_state))


def queue_length(vhost_name: str, host: str) -> int | None:
    listed = rabbitmqctl("list_queues", "-p", vhost_name, "name", "messages").stdout
    for line in listed.splitlines():
        name, _, count = line.partition("\t")
        if name == f"compute.{host}":
            return int(count)
    return None


@pytest.fixture
def state_db(tmp_path):
    """The agents' SQLite database under tmp_path/state (`db seed` creates it in host_config;
    no connection is opened before then), disposed of however the test ends."""
    database = make_database(f"sqlite:///{tmp_path}/state/agent.sqlite")
    yield database
    database.dispose()


@pytest.mark.parametrize("killed", ["before", "after"],
                         ids=["killed-before-the-hypervisor-acted", "killed-after"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_agent_killed_mid_operation_ends_as_novas_table_says(tmp_path, vhost, name,  # noqa: F811
                                                             killed, state_db):
    case = CASES[name]
    final = case.killed_before if killed == "before" else case.killed_after
    create_vhost(vhost[0])
    host = unique_host("kill")
    config = host_config(tmp_path, host, vhost[1], case)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    pause = "FAKEVIRT_PAUSE" if killed == "before" else "FAKEVIRT_PAUSE_AFTER"
    first = start_agent(tmp_path, config, "first", env={pause: f"{case.driver_call}:{barrier}"})
    ctx = RequestContext.new()
    try:
        values = {"vm_state": case.vm_state, "task_state": case.task_state}
        if case.method == "build_and_run_instance":  # as create saves the scheduler's choice
            values.update(node=host, power_state=int(P.NOSTATE))
        with state_db.sessions.begin() as session:
            session.execute(update(Instance).where(Instance.uuid == G1).values(**values))
        with RpcClient(parse(vhost[1])) as client:
            client.cast(host, case.method, "6.0", ctx, instance={"uuid": G1}, **case.args)
        assert wait_for(lambda: (barrier / "paused").exists()), first.log_text()
        first.send(signal.SIGKILL)
        first.wait()
    finally:
        first.stop()
    before_restart = guests(tmp_path)
    assert row(state_db).task_state is not None  # the outcome was never saved
    if killed == "before":  # the hypervisor never acted: the guest as seeded
        assert before_restart == ({} if case.guest is None
                                  else {G1: P[case.guest.upper()]}), before_restart
    second = start_agent(tmp_path, config, "second")
    try:
        # the request the dead agent never acknowledged reaches the new one
        assert wait_for(lambda: ctx.request_id in second.log_text()), second.log_text()
        assert wait_for(lambda: settled(state_db, final)), (tuple(row(state_db)),
                                                             second.log_text())
        assert wait_for(lambda: queue_length(vhost[0], host) == 0), second.log_text()
        after = guests(tmp_path)
        # exactly one guest, or none
        assert after == ({} if final.guest == GONE else {G1: final.guest}), after
        if killed == "after":  # the hypervisor had done it all: nothing redone or undone
            assert after == before_restart
        assert second.proc.poll() is None
    finally:
        second.stop()
