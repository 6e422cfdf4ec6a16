"""Every instance operation end to end: a real agent process on fakevirt with transport_url set,
casts from the RPC client through a real RabbitMQ (a vhost of the test's own), and the instance
rows, action events and log lines that result. The API's part (saving the task_state, recording
the action) is done here with SQL, as the control plane does it before casting."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from agent import vocabulary as states
from agent.context import RequestContext
from agent.db import action_queries as actions
from agent.db.engine import make_database
from agent.db.models import Instance, InstanceFault
from agent.rpc.client import RemoteError, RpcClient
from agent.rpc.transport import parse
from tests.agent_process import agent_command, ready_agent, wait_for, write_config
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)

G1 = "6f0c1a52-8a3e-4f57-9a0e-00000000000a"   # running guest
B1 = "6f0c1a52-8a3e-4f57-9a0e-00000000000b"   # to build
R1 = "6f0c1a52-8a3e-4f57-9a0e-00000000000c"   # to recreate (evacuated here)
X1 = "6f0c1a52-8a3e-4f57-9a0e-00000000000d"   # another host's
ELSEWHERE = "some-other-host"


def scenario(path, host):
    lines = ["[host]", f'hostname = "{host}"', "vcpus = 8", "memory_mb = 16384",
             "local_gb = 200", "",
             "[[domains]]", f'uuid = "{G1}"', 'name = "g1"', 'power_state = "running"', "",
             "[[instances]]", f'uuid = "{G1}"', 'display_name = "g1"', 'vm_state = "active"',
             "vcpus = 1", "memory_mb = 64", ""]
    for uuid, name in ((B1, "b1"), (R1, "r1"), (X1, "x1")):
        lines += ["[[instances]]", f'uuid = "{uuid}"', f'display_name = "{name}"',
                  f'host = "{ELSEWHERE}"', f'node = "{ELSEWHERE}"', 'vm_state = "active"',
                  "vcpus = 2", "memory_mb = 128", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def running(rabbit_vhost, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rpc-ops")
    host = unique_host("ops")
    sc = scenario(tmp / "scenario.toml", host)
    config = write_config(tmp, host=host, transport_url=rabbit_vhost[1], scenario=sc)
    seeded = agent_command("db", "seed", str(sc), "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    with ready_agent(config, tmp) as agent:
        db = make_database(f"sqlite:///{tmp}/state/agent.sqlite")
        with RpcClient(parse(rabbit_vhost[1])) as client:
            yield host, agent, db, client
        db.dispose()


def row(db, uuid):
    with db.sessions() as session:
        return session.execute(select(Instance.host, Instance.vm_state, Instance.task_state,
                                      Instance.power_state, Instance.deleted,
                                      Instance.launched_at, Instance.terminated_at)
                               .where(Instance.uuid == uuid)).one()


def api_sets(db, uuid, action, **values):
    """What the API does before it casts: the task_state (and for a build or an evacuation,
    the host) saved, the action recorded with the request id it returns."""
    ctx = RequestContext.new(user_id="alice", project_id="p1",
                                  global_request_id=f"req-{'0' * 8}-global")
    with db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == uuid).values(**values))
        actions.start_action(session, instance_uuid=uuid, action=action,
                             request_id=ctx.request_id, user_id="alice", project_id="p1")
    return ctx


def settled(db, uuid):
    return wait_for(lambda: row(db, uuid).task_state is None)


def event_of(db, uuid, ctx):
    with db.sessions() as session:
        action = actions.get_action(session, uuid, ctx.request_id)
    return [(e.event, e.result) for e in action.events]


def cast_and_wait(running, uuid, method, action, task_state, **args):
    host, agent, db, client = running
    ctx = api_sets(db, uuid, action, task_state=task_state)
    client.cast(host, method, "6.0", ctx, instance={"nova_object.data": {"uuid": uuid}},
                **args)
    assert settled(db, uuid), agent.log_text()
    assert event_of(db, uuid, ctx) == [(f"compute_{method}", "Success")]
    return ctx, row(db, uuid)


def test_stop_start_reboot_pause_unpause(running):
    host, agent, db, client = running
    ctx, r = cast_and_wait(running, G1, "stop_instance", "stop", states.POWERING_OFF,
                           clean_shutdown=True)
    assert (r.vm_state, r.power_state) == (states.STOPPED, states.PowerState.SHUTDOWN)
    # the operation's lines carry the caller's ids, as nova-compute's
    lines = [line for line in agent.log_text().splitlines() if ctx.request_id in line]
    assert any(f"instance {G1}: stop done" in line for line in lines), agent.log_text()
    assert all(f"[{ctx.global_request_id} {ctx.request_id} alice p1]" in line
               for line in lines)
    _, r = cast_and_wait(running, G1, "start_instance", "start", states.POWERING_ON)
    assert (r.vm_state, r.power_state) == (states.ACTIVE, states.PowerState.RUNNING)
    for kind, task in (("SOFT", states.REBOOTING), ("HARD", states.REBOOTING_HARD)):
        _, r = cast_and_wait(running, G1, "reboot_instance", "reboot", task, reboot_type=kind,
                             block_device_info=None)
        assert (r.vm_state, r.power_state) == (states.ACTIVE, states.PowerState.RUNNING)
    _, r = cast_and_wait(running, G1, "pause_instance", "pause", states.PAUSING)
    assert (r.vm_state, r.power_state) == (states.PAUSED, states.PowerState.PAUSED)
    _, r = cast_and_wait(running, G1, "unpause_instance", "unpause", states.UNPAUSING)
    assert (r.vm_state, r.power_state) == (states.ACTIVE, states.PowerState.RUNNING)


def test_duplicate_and_late_messages_change_nothing(running):
    host, agent, db, client = running
    ctx, before = cast_and_wait(running, G1, "stop_instance", "stop", states.POWERING_OFF)
    for _ in range(2):  # the same request again, as a redelivery would bring it
        client.cast(host, "stop_instance", "6.0", ctx, instance={"uuid": G1})
    start_ctx, _ = cast_and_wait(running, G1, "start_instance", "start", states.POWERING_ON)
    # each duplicate is ignored, whether it ran before or after the start (per-instance lock)
    ignored = f"stop_instance of instance {G1} ignored: task_state is"
    assert wait_for(lambda: agent.log_text().count(ignored) == 2), agent.log_text()
    assert row(db, G1).vm_state == states.ACTIVE
    assert event_of(db, G1, ctx) == [("compute_stop_instance", "Success")]


def test_build_then_terminate(running):
    host, agent, db, client = running
    ctx = api_sets(db, B1, "create", host=host, node=host, vm_state=states.BUILDING,
                   task_state=states.SCHEDULING, power_state=0)
    client.cast(host, "build_and_run_instance", "6.0", ctx, instance={"uuid": B1},
                image={"id": "cirros"}, request_spec={}, filter_properties={},
                admin_password=None, injected_files=[], requested_networks=None,
                security_groups=None, block_device_mapping=[], node=host, limits={},
                host_list=[])
    assert settled(db, B1), agent.log_text()
    r = row(db, B1)
    assert (r.vm_state, r.power_state) == (states.ACTIVE, states.PowerState.RUNNING)
    assert r.launched_at is not None
    assert event_of(db, B1, ctx) == [("compute_build_and_run_instance", "Success")]
    ctx, r = cast_and_wait(running, B1, "terminate_instance", "delete", states.DELETING,
                           bdms=[])
    assert (r.vm_state, r.power_state, r.deleted > 0) == (
        states.DELETED, states.PowerState.NOSTATE, True)
    assert r.terminated_at is not None


def test_evacuated_instance_is_recreated_here(running):
    host, agent, db, client = running
    ctx = api_sets(db, R1, "evacuate", host=host, node=host, task_state=states.REBUILDING)
    client.cast(host, "rebuild_instance", "6.0", ctx, instance={"uuid": R1},
                orig_image_ref=None, image_ref=None, injected_files=None, new_pass=None,
                orig_sys_metadata=None, bdms=None, recreate=True, on_shared_storage=False,
                preserve_ephemeral=False, migration=None, scheduled_node=host, limits={},
                request_spec=None, accel_uuids=[], reimage_boot_volume=False,
                target_state=None)
    assert settled(db, R1), agent.log_text()
    r = row(db, R1)
    assert (r.vm_state, r.power_state) == (states.ACTIVE, states.PowerState.RUNNING)
    assert event_of(db, R1, ctx) == [("compute_rebuild_instance", "Success")]


def test_cast_for_another_hosts_instance_is_ignored(running):
    host, agent, db, client = running
    ctx = api_sets(db, X1, "stop", task_state=states.POWERING_OFF)
    client.cast(host, "stop_instance", "6.0", ctx, instance={"uuid": X1})
    line = f"stop_instance of instance {X1} ignored: the instance is on host '{ELSEWHERE}'"
    assert wait_for(lambda: line in agent.log_text()), agent.log_text()
    r = row(db, X1)
    assert (r.host, r.vm_state, r.task_state) == (ELSEWHERE, states.ACTIVE, states.POWERING_OFF)
    assert event_of(db, X1, ctx) == []


def test_a_failed_operation_reverts_and_records_a_fault(running):
    host, agent, db, client = running
    # pausing a stopped guest: the driver refuses; the task_state is reverted, vm_state kept
    cast_and_wait(running, G1, "stop_instance", "stop", states.POWERING_OFF)
    ctx = api_sets(db, G1, "pause", task_state=states.PAUSING)
    with pytest.raises(RemoteError):
        client.call(host, "pause_instance", "6.0", ctx, timeout=60, instance={"uuid": G1})
    r = row(db, G1)
    assert (r.vm_state, r.task_state, r.power_state) == (
        states.STOPPED, None, states.PowerState.SHUTDOWN)
    assert event_of(db, G1, ctx)[0] == ("compute_pause_instance", "Error")
    with db.sessions() as session:
        assert session.scalar(select(InstanceFault.code)
                              .where(InstanceFault.instance_uuid == G1)) == 500
    cast_and_wait(running, G1, "start_instance", "start", states.POWERING_ON)
