"""The operator's flow end to end on the real libvirtd + QEMU tier: an agent daemon with
`--driver libvirt` on qemu:///system (the QEMU functional tests' connection) takes
`agent server create` (scheduled: no --host), stop, start, reboot, reboot --hard, pause, unpause
and delete, each with --wait, through a real RabbitMQ. After each: the request id the command
printed is on the agent's log lines of that operation and on its instance action (`agent server
events`), and virsh shows the guest as the operation left it (running, shut off, paused; a
reboot gives it a new QEMU process; gone after the delete).

The broker is RabbitMQ (a virtual host of this module's, tests/rabbit.py), not the embedded
SQLite broker: it is the transport a libvirt host runs in production, and the embedded one is
covered on fakevirt (test_server_embedded_broker.py). One small guest at a time (m1.tiny, no
disk, no OS), named with a prefix of this run's own, so other guests on the machine are never
touched; whatever has that prefix is destroyed and undefined at the end.
"""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest

from tests.agent_process import (agent_command, compute_node_saved, ready_agent, wait_for,
                                 write_config)
from tests.conftest import import_libvirt
from tests.qemu_tier import URI, domstate, require_qemu_tier, virsh, virsh_names
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)

pytestmark = pytest.mark.libvirtd

PREFIX = f"cagent-e2e-{uuidlib.uuid4().hex[:8]}-"
WAIT_S = "180"  # --timeout of each --wait: generous, the machine is shared
# A guest with no OS never answers ACPI: a stop destroys it after shutdown_timeout, a soft
# reboot is done hard after wait_soft_reboot_seconds. Short, so the flow does not crawl.
SHUTDOWN_TIMEOUT_S = 2
WAIT_SOFT_REBOOT_S = 2


@pytest.fixture(scope="module")
def qemu_tier():
    require_qemu_tier()
    yield
    _remove_guests(PREFIX)


def _remove_guests(prefix: str) -> None:
    """Destroy and undefine every guest whose name starts with `prefix` (this run's)."""
    libvirt = import_libvirt()
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(prefix):
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass  # gone meanwhile
    finally:
        conn.close()


@pytest.fixture(scope="module")
def running(qemu_tier, rabbit_vhost, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server-flow-qemu")
    host = unique_host("qemu-flow")
    config = write_config(tmp, host=host, transport_url=rabbit_vhost[1], service_down_time=30,
                          compute_driver="libvirt", shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f"\n[libvirt]\nvirt_type = qemu\nconnection_uri = {URI}\n"
                 f"wait_soft_reboot_seconds = {WAIT_SOFT_REBOOT_S}\n")
    with ready_agent(config, tmp) as agent:
        assert wait_for(lambda: compute_node_saved(tmp)), agent.log_text()
        yield host, agent, config


def server(config, *args):
    return agent_command("server", *args, "--config", str(config), timeout=600)


def request_id(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("request "))


def show(config, key) -> dict:
    result = server(config, "show", key, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def domid(name: str) -> str:
    """The guest's QEMU domain id: a new one after every restart of its process."""
    return virsh("domid", name).strip()


def operation_lines(log: str, req: str, uuid: str) -> list[str]:
    return [line for line in log.splitlines() if req in line and uuid in line]


# (command args, nova's action, the RPC method, vm_state, power_state, virsh domstate, what
# the driver logs under the request id: the clean stop's destroy, the soft reboot done hard)
STEPS = [
    (("stop",), "stop", "stop_instance", "stopped", "Shutdown", "shut off",
     f"did not shut down within {SHUTDOWN_TIMEOUT_S} s (shutdown_timeout; destroying it)"),
    (("start",), "start", "start_instance", "active", "Running", "running", None),
    (("reboot",), "reboot", "reboot_instance", "active", "Running", "running",
     "failed; rebooting hard"),
    (("reboot", "--hard"), "reboot", "reboot_instance", "active", "Running", "running", None),
    (("pause",), "pause", "pause_instance", "paused", "Paused", "paused", None),
    (("unpause",), "unpause", "unpause_instance", "active", "Running", "running", None),
]


def test_create_then_every_action_on_a_real_guest(running):
    host, agent, config = running
    name = f"{PREFIX}g1"
    made = server(config, "create", "--flavor", "m1.tiny", "--name", name, "--wait",
                  "--timeout", WAIT_S)
    assert made.returncode == 0, made.stdout + made.stderr + agent.log_text()
    assert f"scheduled to host {host}" in made.stdout
    assert "compute_build_and_run_instance: Success" in made.stdout
    shown = show(config, name)
    uuid = shown["id"]
    assert (shown["status"], shown["vm_state"], shown["task_state"], shown["power_state"]) == (
        "ACTIVE", "active", None, "Running")
    assert domstate(name) == "running"
    assert virsh("dominfo", name).count(uuid) == 1
    done = [("create", "build_and_run_instance", request_id(made.stdout))]
    _assert_in_log(agent, done[-1][2], uuid, "build_and_run_instance",
                   "spawned (1 vCPUs, 512 MiB)")

    for args, action, method, vm_state, power, virsh_state, driver_line in STEPS:
        before = domid(name) if action == "reboot" else None
        result = server(config, *args, name, "--wait", "--timeout", WAIT_S)
        assert result.returncode == 0, result.stdout + result.stderr + agent.log_text()
        assert f"compute_{method}: Success" in result.stdout
        req = request_id(result.stdout)
        done.append((action, method, req))
        shown = show(config, name)
        assert (shown["vm_state"], shown["task_state"], shown["power_state"]) == (
            vm_state, None, power), args
        assert domstate(name) == virsh_state, args
        if before is not None:  # really rebooted: a new QEMU process
            assert domid(name) != before, args
        _assert_in_log(agent, req, uuid, method, driver_line)
        _assert_in_events(config, uuid, done)

    gone = server(config, "delete", name, "--wait", "--timeout", WAIT_S)
    assert gone.returncode == 0, gone.stdout + gone.stderr + agent.log_text()
    done.append(("delete", "terminate_instance", request_id(gone.stdout)))
    assert name not in virsh_names("--all")
    assert server(config, "show", name).returncode == 1  # gone from the live instances
    _assert_in_log(agent, done[-1][2], uuid, "terminate_instance")
    _assert_in_events(config, uuid, done)


def _assert_in_log(agent, req: str, uuid: str, method: str,
                   driver_line: str | None = None) -> None:
    """The agent's lines of this operation carry `req`: its start, its saved outcome and,
    when given, the driver's own line (`driver_line`)."""
    log = agent.log_text()
    lines = operation_lines(log, req, uuid)
    assert any(f"{uuid}: " in line and f"({method})" in line for line in lines), (req, log)
    assert any(f"{uuid}: " in line and " done: vm_state " in line for line in lines), (req, log)
    if driver_line is not None:
        assert any(driver_line in line for line in lines), (req, driver_line, log)


def _assert_in_events(config, uuid: str, done: list[tuple[str, str, str]]) -> None:
    """`agent server events` lists one action per request so far, in order, each with its
    request id and its compute_<method> event finished with Success."""
    listed = server(config, "events", uuid, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    recorded = [(a["action"], a["request_id"], [(e["event"], e["result"]) for e in a["events"]])
                for a in json.loads(listed.stdout)["actions"]]
    assert recorded == [(action, req, [(f"compute_{method}", "Success")])
                        for action, method, req in done]
