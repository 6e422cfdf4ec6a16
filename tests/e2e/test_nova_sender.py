"""nova's own senders drive a running agent: nova's `nova.compute.rpcapi.ComputeAPI` (from
PyPI, in a virtual environment of its own) casts stop, start and reboot and makes one call;
oslo.messaging's RPCClient sends every method. The rows change as nova's would."""

from __future__ import annotations

import uuid as uuid_lib

import pytest

from agent import vocabulary as states
from agent.db.engine import make_database
from tests.agent_process import agent_command, ready_agent, write_config
from tests.e2e.test_rpc_operations import (B1, G1, R1, api_sets, event_of, row, scenario,
                                           settled)
from tests.nova_venv import NovaSender
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)

P = states.PowerState


@pytest.fixture(scope="module")
def agent_and_sender(rabbit_vhost, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nova-sender")
    host = unique_host("nova")
    sc = scenario(tmp / "scenario.toml", host)
    config = write_config(tmp, host=host, transport_url=rabbit_vhost[1], scenario=sc)
    seeded = agent_command("db", "seed", str(sc), "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    sender = NovaSender(rabbit_vhost[1], host)
    try:
        with ready_agent(config, tmp) as agent:
            db = make_database(f"sqlite:///{tmp}/state/agent.sqlite")
            yield host, agent, db, sender
            db.dispose()
    finally:
        sender.close()


def send(env, sender_kind, uuid, method, action, *, call=False, **values):
    host, agent, db, sender = env
    args = values.pop("args", {})
    ctx = api_sets(db, uuid, action, **values)
    answer = sender.send(sender=sender_kind, method=method, call=call, instance_uuid=uuid,
                         request_id=ctx.request_id, args=args)
    assert answer["ok"], answer
    assert settled(db, uuid), agent.log_text()
    assert event_of(db, uuid, ctx) == [(f"compute_{method}", "Success")], agent.log_text()
    # the agent logged the operation under the caller's request id
    assert f"{ctx.request_id}" in agent.log_text()
    return row(db, uuid)


def test_nova_compute_api_casts_stop_start_reboot_and_calls(agent_and_sender):
    r = send(agent_and_sender, "nova", G1, "stop_instance", "stop",
             task_state=states.POWERING_OFF)
    assert (r.vm_state, r.power_state) == (states.STOPPED, P.SHUTDOWN)
    r = send(agent_and_sender, "nova", G1, "start_instance", "start",
             task_state=states.POWERING_ON)
    assert (r.vm_state, r.power_state) == (states.ACTIVE, P.RUNNING)
    r = send(agent_and_sender, "nova", G1, "reboot_instance", "reboot",
             task_state=states.REBOOTING_HARD, args={"reboot_type": "HARD"})
    assert (r.vm_state, r.power_state) == (states.ACTIVE, P.RUNNING)
    # one call: nova's stop_instance with do_cast=False waits for the agent's reply
    r = send(agent_and_sender, "nova", G1, "stop_instance", "stop", call=True,
             task_state=states.POWERING_OFF)
    assert (r.vm_state, r.power_state) == (states.STOPPED, P.SHUTDOWN)
    send(agent_and_sender, "nova", G1, "start_instance", "start",
         task_state=states.POWERING_ON)


def test_oslo_messaging_client_sends_every_method(agent_and_sender):
    host = agent_and_sender[0]
    steps = [
        (B1, "build_and_run_instance", "create",
         dict(host=host, node=host, vm_state=states.BUILDING, task_state=states.SCHEDULING,
              args={"image": {"id": "cirros"}, "request_spec": {}, "filter_properties": {},
                    "admin_password": None, "injected_files": [],
                    "requested_networks": None, "security_groups": None,
                    "block_device_mapping": [], "node": host, "limits": {},
                    "host_list": [], "accel_uuids": []}),
         (states.ACTIVE, P.RUNNING)),
        (B1, "stop_instance", "stop",
         dict(task_state=states.POWERING_OFF, args={"clean_shutdown": True}),
         (states.STOPPED, P.SHUTDOWN)),
        (B1, "start_instance", "start", dict(task_state=states.POWERING_ON),
         (states.ACTIVE, P.RUNNING)),
        (B1, "reboot_instance", "reboot",
         dict(task_state=states.REBOOTING,
              args={"block_device_info": None, "reboot_type": "SOFT"}),
         (states.ACTIVE, P.RUNNING)),
        (B1, "pause_instance", "pause", dict(task_state=states.PAUSING),
         (states.PAUSED, P.PAUSED)),
        (B1, "unpause_instance", "unpause", dict(task_state=states.UNPAUSING),
         (states.ACTIVE, P.RUNNING)),
        (B1, "terminate_instance", "delete", dict(task_state=states.DELETING,
                                                  args={"bdms": []}),
         (states.DELETED, P.NOSTATE)),
        (R1, "rebuild_instance", "evacuate",
         dict(host=host, node=host, task_state=states.REBUILDING,
              args={"orig_image_ref": None, "image_ref": None, "injected_files": None,
                    "new_pass": None, "orig_sys_metadata": None, "bdms": None,
                    "recreate": True, "on_shared_storage": False,
                    "preserve_ephemeral": False, "migration": None,
                    "scheduled_node": host, "limits": {}, "request_spec": None,
                    "accel_uuids": [], "reimage_boot_volume": False,
                    "target_state": None}),
         (states.ACTIVE, P.RUNNING)),
    ]
    for uuid, method, action, values, (vm_state, power) in steps:
        r = send(agent_and_sender, "oslo", uuid, method, action, **values)
        assert (r.vm_state, r.power_state) == (vm_state, power), method


def test_oslo_call_of_an_unknown_method_is_a_remote_error(agent_and_sender):
    host, agent, db, sender = agent_and_sender
    answer = sender.send(sender="oslo", method="get_console_output", call=True,
                         instance_uuid=G1, request_id=f"req-{uuid_lib.uuid4()}",
                         args={"tail_length": 10})
    assert not answer["ok"] and "get_console_output" in answer["error"]
