"""`agent server ...` through the real command line on every backend, casting through a real
RabbitMQ (a vhost of the module's own): scheduling, nova's state rules, the request id in the
output, the cast in the host's queue and the action in `agent server events`. The compute host
itself is the test here: it reads its queue (the agent's side is tested end to end in
tests/e2e)."""

from __future__ import annotations

import json
import re
import socket

import pytest
from sqlalchemy import update

from agent.cli import main
from agent.db.models import ComputeNode, Instance, Service
from agent.rpc import wire
from agent.rpc.transport import parse
from tests.functional.test_rpc_client import get_one, host_queue
from tests.functional.test_services_cli import add_service, set_service
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)


@pytest.fixture
def env(any_db_url, any_db, rabbit_vhost, capsys):
    transport = parse(rabbit_vhost[1])
    conn = transport.connection()

    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = main(["server", *args, "--db", any_db_url,
                           "--transport-url", rabbit_vhost[1]])
        except SystemExit as exc:
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    yield run, any_db, conn
    conn.release()


def add_host(db, conn, *, free_ram_mb=7680, **service):
    host = unique_host("sched")
    service_id = add_service(db, host)
    if service:
        set_service(db, service_id, **service)
    with db.sessions.begin() as session:
        session.add(ComputeNode(host=host, hypervisor_hostname=host, service_id=service_id,
                                vcpus=8, memory_mb=8192, local_gb=100, vcpus_used=0,
                                memory_mb_used=8192 - free_ram_mb, local_gb_used=0,
                                free_ram_mb=free_ram_mb, free_disk_gb=100,
                                cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0,
                                disk_allocation_ratio=1.0))
    return host, host_queue(conn, host)


def request_id(out: str) -> str:
    line = next(line for line in out.splitlines() if line.startswith("request "))
    return line.split()[1]


def shown(run, key):
    status, out, _ = run("show", key, "--format", "json")
    assert status == 0
    return json.loads(out)


def events(run, key):
    status, out, _ = run("events", key, "--format", "json")
    assert status == 0
    return json.loads(out)["actions"]


def add_flavor(url):
    assert main(["flavor", "create", "small", "--vcpus", "1", "--ram", "512", "--disk", "1",
                 "--db", url]) == 0


def test_create_schedules_to_the_most_free_ram_and_casts_the_build(env, any_db_url):
    run, db, conn = env
    add_flavor(any_db_url)
    small, small_q = add_host(db, conn, free_ram_mb=1024)
    big, big_q = add_host(db, conn, free_ram_mb=6000)
    status, out, err = run("create", "--flavor", "small", "--name", "vm1")
    assert status == 0, err
    req = request_id(out)
    assert req.startswith("req-") and f"host {big}" in out
    server = shown(run, "vm1")
    assert (server["status"], server["vm_state"], server["task_state"], server["host"],
            server["node"]) == ("BUILD", "building", "scheduling", big, big)
    message = get_one(big_q)
    assert message is not None and get_one(small_q, 0.3) is None
    request = wire.decode_request(message.body)
    assert request.method == "build_and_run_instance"
    assert request.context.request_id == req
    assert request.args["instance"]["nova_object.data"]["uuid"] == server["id"]
    assert request.args["node"] == big
    assert [(a["action"], a["request_id"]) for a in events(run, "vm1")] == [("create", req)]


def test_create_with_host_still_filters(env, any_db_url):
    run, db, conn = env
    add_flavor(any_db_url)
    disabled, _ = add_host(db, conn, disabled=True, disabled_reason="maintenance")
    status, out, err = run("create", "--flavor", "small", "--name", "vm2", "--host", disabled)
    assert status == 1
    assert request_id(out).startswith("req-")
    assert f"{disabled} ({disabled}): ComputeFilter: service disabled (maintenance)" in err
    server = shown(run, "vm2")
    assert (server["status"], server["vm_state"], server["task_state"], server["host"]) == (
        "ERROR", "error", None, None)


def test_no_valid_host_names_each_failure(env, any_db_url):
    run, db, conn = env
    assert main(["flavor", "create", "huge", "--vcpus", "1", "--ram", "65536",
                 "--db", any_db_url]) == 0
    full, _ = add_host(db, conn, free_ram_mb=100)
    down, _ = add_host(db, conn, forced_down=True)
    status, out, err = run("create", "--flavor", "huge", "--name", "vm3")
    assert status == 1
    assert f"{full} ({full}): RamFilter: 65536 MiB RAM requested" in err
    assert f"{down} ({down}): ComputeFilter: service forced down" in err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def test_a_broker_that_cannot_be_reached_is_one_line_naming_what_was_saved(env, any_db_url,
                                                                           capsys):
    run, db, conn = env
    add_flavor(any_db_url)
    host, queue = add_host(db, conn)
    broker = f"rabbit://guest:Br0kerSecret@127.0.0.1:{closed_port()}/"
    status = main(["server", "create", "--flavor", "small", "--name", "vm9", "--db", any_db_url,
                   "--transport-url", broker])
    out, err = capsys.readouterr()
    assert status == 1
    req = request_id(out)
    assert err.startswith("agent: error: instance ") and err.count("\n") == 1, err
    assert (f"(vm9) was saved with task_state scheduling, but build_and_run_instance could not "
            f"be sent to host {host} (message broker rabbit://guest:***@127.0.0.1:") in err
    assert f"request {req}" in err and "Br0kerSecret" not in err
    server = shown(run, "vm9")
    assert (server["status"], server["vm_state"], server["task_state"], server["host"]) == (
        "BUILD", "building", "scheduling", host)
    assert get_one(queue, 0.3) is None


def set_states(db, name, **values):
    with db.engine.begin() as c:
        c.execute(update(Instance).where(Instance.display_name == name).values(**values))


@pytest.mark.parametrize("action, extra, vm_state, task_state, method, saved", [
    ("stop", (), "active", None, "stop_instance", "powering-off"),
    ("start", (), "stopped", None, "start_instance", "powering-on"),
    ("reboot", (), "active", None, "reboot_instance", "rebooting"),
    ("reboot", ("--hard",), "paused", None, "reboot_instance", "rebooting_hard"),
    ("pause", (), "active", None, "pause_instance", "pausing"),
    ("unpause", (), "paused", None, "unpause_instance", "unpausing"),
    ("delete", (), "active", "powering-off", "terminate_instance", "deleting"),
])
def test_each_action_saves_its_task_state_and_casts(env, any_db_url, action, extra,
                                                     vm_state, task_state, method, saved):
    run, db, conn = env
    add_flavor(any_db_url)
    host, queue = add_host(db, conn)
    assert run("create", "--flavor", "small", "--name", "vm")[0] == 0
    assert get_one(queue) is not None
    set_states(db, "vm", vm_state=vm_state, task_state=task_state, power_state=1)
    status, out, err = run(action, "vm", *extra)
    assert status == 0, err
    req = request_id(out)
    assert shown(run, "vm")["task_state"] == saved
    request = wire.decode_request(get_one(queue).body)
    assert (request.method, request.context.request_id) == (method, req)
    if extra:
        assert request.args["reboot_type"] == "HARD"
    assert events(run, "vm")[-1]["request_id"] == req


@pytest.mark.parametrize("action, vm_state, task_state, named", [
    ("stop", "stopped", None, "vm_state stopped"),
    ("start", "active", None, "vm_state active"),
    ("pause", "active", "powering-off", "task_state powering-off"),
    ("unpause", "active", None, "vm_state active"),
    ("reboot", "stopped", None, "vm_state stopped"),
])
def test_a_forbidden_state_is_refused_naming_it(env, any_db_url, action, vm_state, task_state,
                                                named):
    run, db, conn = env
    add_flavor(any_db_url)
    host, queue = add_host(db, conn)
    assert run("create", "--flavor", "small", "--name", "vm")[0] == 0
    assert get_one(queue) is not None
    set_states(db, "vm", vm_state=vm_state, task_state=task_state)
    status, out, err = run(action, "vm")
    assert status == 1 and named in err and err.count("\n") == 1
    assert shown(run, "vm")["task_state"] == task_state
    assert get_one(queue, 0.3) is None
    assert [a["action"] for a in events(run, "vm")] == ["create"]


def test_unknown_and_ambiguous_names(env, any_db_url):
    run, db, conn = env
    add_flavor(any_db_url)
    add_host(db, conn)
    assert run("stop", "nothing")[0] == 1
    for _ in range(2):
        assert run("create", "--flavor", "small", "--name", "twin")[0] == 0
    status, _, err = run("stop", "twin")
    assert status == 1 and "2 instances are named 'twin'" in err


def test_list_by_host(env, any_db_url):
    run, db, conn = env
    add_flavor(any_db_url)
    host, _ = add_host(db, conn)
    assert run("create", "--flavor", "small", "--name", "listed")[0] == 0
    status, out, _ = run("list", "--format", "json", "--host", host)
    assert status == 0 and [s["name"] for s in json.loads(out)["servers"]] == ["listed"]
    status, out, _ = run("list", "--format", "json", "--host", "elsewhere")
    assert json.loads(out)["servers"] == []


@pytest.mark.parametrize("vm_state, task_state, power_state, status, power", [
    ("active", None, 1, "ACTIVE", "Running"),
    ("stopped", None, 4, "SHUTOFF", "Shutdown"),
    ("active", "rebooting_hard", 1, "HARD_REBOOT", "Running"),
    ("active", "rebooting", 1, "REBOOT", "Running"),
    ("paused", None, 3, "PAUSED", "Paused"),
    ("active", "powering-off", 1, "ACTIVE", "Running"),
])
def test_list_and_show_give_nova_status_then_the_states(env, any_db_url, vm_state, task_state,
                                                         power_state, status, power):
    """Status is nova's server status, as `openstack server list|show` shows it; vm_state,
    task_state and power_state follow (openstack's OS-EXT-STS:*)."""
    run, db, conn = env
    add_flavor(any_db_url)
    add_host(db, conn)
    assert run("create", "--flavor", "small", "--name", "vm")[0] == 0
    set_states(db, "vm", vm_state=vm_state, task_state=task_state, power_state=power_state)
    server = shown(run, "vm")
    assert (server["status"], server["vm_state"], server["task_state"],
            server["power_state"]) == (status, vm_state, task_state, power)
    code, out, _ = run("list", "--format", "json")
    assert code == 0
    assert [(s["status"], s["vm_state"]) for s in json.loads(out)["servers"]] == [
        (status, vm_state)]
    code, out, _ = run("list")
    header, row = [re.split(r" {2,}", line) for line in out.splitlines()]
    assert header == ["ID", "Name", "Status", "VM State", "Task State", "Power State", "Host",
                      "Node"]
    assert row[1:6] == ["vm", status, vm_state, task_state or "-", power]


def test_without_a_transport_nothing_is_written(postgresql_url, capsys):
    """A server database has no default broker (only SQLite, one machine, has one)."""
    assert main(["flavor", "create", "small", "--vcpus", "1", "--ram", "64",
                 "--db", postgresql_url]) == 0
    capsys.readouterr()
    assert main(["server", "create", "--flavor", "small", "--name", "nope",
                 "--db", postgresql_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no transport_url" in err
    assert main(["server", "list", "--format", "json", "--db", postgresql_url]) == 0
    assert json.loads(capsys.readouterr().out)["servers"] == []


def test_delete_on_a_down_host_is_local_and_says_so(env, any_db_url):
    run, db, conn = env
    add_flavor(any_db_url)
    host, queue = add_host(db, conn)
    assert run("create", "--flavor", "small", "--name", "vm")[0] == 0
    assert get_one(queue) is not None
    set_states(db, "vm", vm_state="active", task_state=None, power_state=1)
    with db.sessions.begin() as session:  # the host goes down
        session.execute(update(Service).where(Service.host == host).values(forced_down=True))
    status, out, err = run("delete", "vm")
    assert status == 0, err
    assert f"deleted (its host {host} is down: its agent destroys the guest when it is back)" \
        in out
    assert get_one(queue, 0.3) is None  # nothing cast
    status, _, err = run("show", "vm")
    assert status == 1 and "no instance with id or name 'vm'" in err


def test_stop_without_a_host_is_refused(env, any_db_url):
    run, db, conn = env
    add_flavor(any_db_url)
    status, out, err = run("create", "--flavor", "small", "--name", "vm")  # no host at all
    assert status == 1
    status, out, err = run("stop", "vm")
    assert status == 1
    assert "cannot stop instance" in err and "it has no host" in err
