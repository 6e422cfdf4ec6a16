"""`agent fleet` with transport_url on a real RabbitMQ (a virtual host of its own): every
simulated host declares and consumes its own compute.<host> queue on a few shared connections,
the operations cast to each host (stop, then start) are performed and saved through the agent's
own code, no message stays in a queue, and the queues go at the end."""

from __future__ import annotations

import threading

import kombu
from amqp.exceptions import NotFound
from sqlalchemy import select

from agent.control.servers import act, send
from agent.db.action_queries import get_action
from agent.db.engine import make_database
from agent.db.models import Instance
from agent.fleet.runner import FleetOptions, FleetRunner
from agent.fleet.simulated import host_names
from agent.rpc.client import RpcClient, exchange
from agent.rpc.transport import parse
from tests.agent_process import wait_for
from tests.functional.test_fleet import fleet_conf, fleet_db_url  # noqa: F401  (fixture)
from tests.rabbit import rabbit_vhost, rabbitmqctl  # noqa: F401  (fixture)

N, CONNECTIONS = 5, 2


def queue_state(transport, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of the queue `name` as the broker has it; None when it does not
    exist."""
    with transport.connection() as conn:
        queue = kombu.Queue(name, exchange=exchange(), routing_key=name, durable=False,
                            auto_delete=False, channel=conn.channel())
        try:
            ok = queue.queue_declare(passive=True)
        except NotFound:
            return None
        return ok.message_count, ok.consumer_count


def connections_in(vhost: str) -> int:
    out = rabbitmqctl("list_connections", "vhost").stdout.split()
    return out.count(vhost)


def instances(db) -> dict[str, tuple[str, str | None, str | None]]:
    """host -> (uuid, vm_state, task_state) of its one instance."""
    with db.sessions() as session:
        return {i.host: (i.uuid, i.vm_state, i.task_state)
                for i in session.scalars(select(Instance).where(Instance.deleted == 0))}


def cast_to_every_host(db, client, action: str) -> dict[str, str]:
    """`agent server <action>` on every host's instance: the task_state saved, the action
    recorded, then the cast; uuid -> request id."""
    request_ids = {}
    for uuid, _, _ in instances(db).values():
        with db.sessions.begin() as session:
            outcome = act(session, uuid, action, service_down_time=60)
        send(client, outcome)
        request_ids[uuid] = outcome.request_id
    return request_ids


def test_every_simulated_host_consumes_its_queue_and_performs_what_is_cast_to_it(
        tmp_path, fleet_db_url, rabbit_vhost):  # noqa: F811
    vhost, url = rabbit_vhost
    transport = parse(url)
    conf = fleet_conf(tmp_path, fleet_db_url, transport_url=url)
    runner = FleetRunner(conf, FleetOptions(count=N, instances_per_host=1, ramp=0.2,
                                            poll_interval=0.2, progress_interval=1.0,
                                            rpc_connections=CONNECTIONS, seed=3))
    reports = []
    thread = threading.Thread(target=lambda: reports.append(runner.run()), daemon=True)
    thread.start()
    db = make_database(fleet_db_url)
    queues = [f"compute.{host}" for host in host_names("fleet-", N)]
    try:
        assert wait_for(lambda: all(queue_state(transport, q) == (0, 1) for q in queues),
                        deadline=120), [queue_state(transport, q) for q in queues]
        # N hosts, CONNECTIONS connections (not one, let alone seven, per host)
        assert connections_in(vhost) == CONNECTIONS
        assert {vm for _, vm, _ in instances(db).values()} == {"active"}

        with RpcClient(transport) as client:
            for action, vm_state in (("stop", "stopped"), ("start", "active")):
                request_ids = cast_to_every_host(db, client, action)
                assert wait_for(lambda: {(vm, task) for _, vm, task in instances(db).values()}
                                == {(vm_state, None)}, deadline=120), instances(db)
                with db.sessions() as session:
                    for uuid, request_id in request_ids.items():
                        events = get_action(session, uuid, request_id).events
                        assert [(e.event, e.result) for e in events] == [
                            (f"compute_{action}_instance", "Success")]
        assert sorted(instances(db)) == host_names("fleet-", N)
        assert [queue_state(transport, q) for q in queues] == [(0, 1)] * N
    finally:
        runner.request_stop("test")
        thread.join(120)
        db.dispose()
    report = reports[0]
    assert (report.rpc_connections, report.rpc_queues) == (CONNECTIONS, N)
    assert (report.rpc_requests, report.rpc_failed, report.rpc_refused_or_dropped) == (
        2 * N, 0, 0)
    assert report.rpc_messages_left == 0
    assert report.false_downs == 0 and report.errors == 0
    assert report.statements_by_activity["rpc"] > 0
    assert report.cleanup.endswith(f"; {N} compute queues deleted")
    assert f"{N} queues consumed on {CONNECTIONS} connections" in report.format_table()
    assert [queue_state(transport, q) for q in queues] == [None] * N


def test_kept_fleet_leaves_its_queues_and_counts_their_messages(
        tmp_path, rabbit_vhost):  # noqa: F811
    url = rabbit_vhost[1]
    transport = parse(url)
    conf = fleet_conf(tmp_path, f"sqlite:///{tmp_path}/fleet.sqlite", transport_url=url)
    runner = FleetRunner(conf, FleetOptions(count=2, instances_per_host=0, ramp=0.1,
                                            poll_interval=0.2, progress_interval=1.0,
                                            keep=True))
    reports = []
    thread = threading.Thread(target=lambda: reports.append(runner.run()), daemon=True)
    thread.start()
    queues = [f"compute.{host}" for host in host_names("fleet-", 2)]
    try:
        assert wait_for(lambda: all(queue_state(transport, q) == (0, 1) for q in queues),
                        deadline=120)
    finally:
        runner.request_stop("test")
        thread.join(120)
    assert [queue_state(transport, q) for q in queues] == [(0, 0)] * 2  # kept, not consumed
    assert reports[0].rpc_messages_left == 0 and reports[0].rpc_connections == 2
    assert reports[0].cleanup == "kept (--keep); 2 compute queues kept"


def test_fleet_command_consumes_over_the_connections_asked_for(
        tmp_path, rabbit_vhost):  # noqa: F811
    """`agent fleet --transport-url URL --rpc-connections 2`: the broker sees N queues with a
    consumer each and two connections; Ctrl-C prints the compute RPC line and deletes the
    queues. Its --help explains the option."""
    import signal
    import subprocess
    import sys

    from tests.agent_process import AgentProcess, write_config

    vhost, url = rabbit_vhost
    transport = parse(url)
    count = 3
    help_text = subprocess.run([sys.executable, "-m", "agent", "fleet", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--rpc-connections C" in help_text and "compute.<host>" in help_text
    config = write_config(tmp_path, database_url=f"sqlite:///{tmp_path}/fleet.sqlite")
    proc = AgentProcess(config, tmp_path / "fleet.log",
                        args=["fleet", "--count", str(count), "--instances-per-host", "0",
                              "--ramp", "0.2", "--transport-url", url,
                              "--rpc-connections", "2", "--progress-interval", "1"])
    queues = [f"compute.{host}" for host in host_names("fleet-", count)]
    try:
        assert wait_for(lambda: all(queue_state(transport, q) == (0, 1) for q in queues),
                        deadline=120), proc.log_text()
        assert connections_in(vhost) == 2
        proc.send(signal.SIGINT)
        assert proc.wait() == 0, proc.log_text()
        out = proc.proc.stdout.read().decode()
    finally:
        proc.stop()
    assert f"{count} queues consumed on 2 connections" in out
    assert "messages left in the queues: 0" in out
    assert f"{count} compute queues deleted" in out
    assert [queue_state(transport, q) for q in queues] == [None] * count
