"""The RPC server on a real RabbitMQ, with a small endpoint: dispatch and replies, refusals,
malformed messages, acknowledgement only after the outcome, a lost and returning broker."""

from __future__ import annotations

import logging
import threading

import kombu
import pytest

from agent.context import RequestContext
from agent.rpc.client import RemoteError, RpcClient, exchange
from agent.rpc.dispatcher import Dispatcher
from agent.rpc.server import RpcServer
from agent.rpc.transport import parse
from tests.rabbit import rabbit_vhost, rabbitmqctl, unique_host  # noqa: F401  (fixture)


def wait_for(condition, seconds=30.0, what="condition"):
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Endpoint:
    def __init__(self):
        self.calls = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def stop_instance(self, context, instance, clean_shutdown=True):
        self.entered.set()
        assert self.gate.wait(30)
        self.calls.append(("stop_instance", instance, context.request_id))
        logging.getLogger("test.endpoint").info("stopping %s", instance)
        return {"stopped": instance}

    def boom(self, context):
        raise RuntimeError("the driver said no")


@pytest.fixture(autouse=True)
def _request_ids_in_caplog(caplog):
    from agent.log import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())


@pytest.fixture
def served(rabbit_vhost):
    host, endpoint = unique_host(), Endpoint()
    transport = parse(rabbit_vhost[1])
    server = RpcServer(transport, host, Dispatcher(endpoint, ("stop_instance", "boom")),
                       backoff=(0.2, 1.0))
    assert server.start()
    with RpcClient(transport) as client:
        yield host, endpoint, server, client, transport
    endpoint.gate.set()
    server.stop()


def queue_counts(transport, name):
    with transport.connection() as conn:
        q = kombu.Queue(name, exchange=exchange(), routing_key=name, durable=False,
                        auto_delete=False, channel=conn.default_channel)
        result = q.queue_declare(passive=True)
        return result.message_count


def test_call_and_cast_run_the_method_with_the_callers_context(served, caplog):
    host, endpoint, server, client, _ = served
    ctx = RequestContext.new(global_request_id="req-g1", user_id="alice", project_id="p1")
    caplog.set_level(logging.INFO)
    assert client.call(host, "stop_instance", "6.0", ctx, timeout=30, instance="u1") == {
        "stopped": "u1"}
    client.cast(host, "stop_instance", "6.0", ctx, instance="u2", clean_shutdown=False)
    wait_for(lambda: len(endpoint.calls) == 2, what="the cast")
    assert [c[2] for c in endpoint.calls] == [ctx.request_id] * 2
    lines = [r for r in caplog.records if r.name == "test.endpoint"]
    assert {r.request_id for r in lines} == {f"req-g1 {ctx.request_id} alice p1"}


@pytest.mark.parametrize("method, version, args, reason", [
    ("reboot_everything", "6.0", {}, "does not support RPC method reboot_everything"),
    ("stop_instance", "7.0", {"instance": "u"}, "does not support RPC version 7.0"),
    ("stop_instance", "6.1", {"instance": "u"}, "does not support RPC version 6.1"),
    ("stop_instance", "5.0", {"instance": "u"}, "does not support RPC version 5.0"),
    ("stop_instance", "6.0", {}, "missing a required argument: 'instance'"),
    ("stop_instance", "6.0", {"instance": "u", "colour": "red"}, "unexpected keyword"),
])
def test_refused_call_gets_a_failure_and_cast_one_line(served, caplog, method, version, args,
                                                       reason):
    host, endpoint, server, client, transport = served
    with pytest.raises(RemoteError, match=reason):
        client.call(host, method, version, RequestContext.new(), timeout=30, **args)
    caplog.set_level(logging.WARNING, logger="agent.rpc.server")
    caplog.clear()
    ctx = RequestContext.new()
    client.cast(host, method, version, ctx, **args)
    wait_for(lambda: any(reason in r.getMessage() for r in caplog.records
                         if r.name == "agent.rpc.server"), what="the refusal line")
    refusals = [r for r in caplog.records if r.name == "agent.rpc.server"]
    assert len(refusals) == 1 and refusals[0].getMessage().startswith(f"cast {method} ")
    assert refusals[0].request_id.split()[1] == ctx.request_id
    assert endpoint.calls == [] and server.is_healthy()
    wait_for(lambda: queue_counts(transport, server.queue_name) == 0, what="the ack")


def test_a_failing_method_is_a_failure_reply_and_the_server_lives(served):
    host, endpoint, server, client, _ = served
    with pytest.raises(RemoteError, match="RuntimeError: the driver said no"):
        client.call(host, "boom", "6.0", RequestContext.new(), timeout=30)
    assert client.call(host, "stop_instance", "6.0", RequestContext.new(), timeout=30,
                       instance="u3") == {"stopped": "u3"}


@pytest.mark.parametrize("body, reason", [
    (b"not json at all", "body is not JSON"),
    (b'{"method": "stop_instance", "args": {}}', "not an oslo 2.0 envelope"),
    (b'{"oslo.version": "2.0", "oslo.message": "{\\"args\\": {}}"}', "no method name"),
])
def test_malformed_message_is_dropped_with_one_line(served, caplog, body, reason):
    host, endpoint, server, client, transport = served
    caplog.set_level(logging.WARNING, logger="agent.rpc.server")
    with transport.connection() as conn:
        kombu.Producer(conn.default_channel).publish(
            body, exchange=exchange(), routing_key=server.queue_name,
            content_type="application/json", content_encoding="utf-8")
    wait_for(lambda: any(reason in r.getMessage() for r in caplog.records),
             what="the drop line")
    assert len([r for r in caplog.records if r.name == "agent.rpc.server"]) == 1
    wait_for(lambda: queue_counts(transport, server.queue_name) == 0, what="the ack")
    assert client.call(host, "stop_instance", "6.0", RequestContext.new(), timeout=30,
                       instance="after") == {"stopped": "after"}


def test_acknowledged_only_after_the_method_returns(served):
    host, endpoint, server, client, transport = served
    endpoint.gate.clear()
    client.cast(host, "stop_instance", "6.0", RequestContext.new(), instance="u4")
    assert endpoint.entered.wait(30)
    with transport.connection() as conn:
        conn.ensure_connection()
    # the broker holds the message unacknowledged while the method runs
    assert unacked(rabbitmqctl, server.queue_name) == 1
    endpoint.gate.set()
    wait_for(lambda: unacked(rabbitmqctl, server.queue_name) == 0, what="the ack")
    assert endpoint.calls[0][1] == "u4"


def unacked(ctl, name):
    from tests.rabbit import current_vhost

    out = ctl("list_queues", "-p", current_vhost(), "name", "messages_unacknowledged").stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return int(parts[1])
    return None


def test_broker_connections_closed_reconnects_and_consumes_again(served, caplog, rabbit_vhost):
    host, endpoint, server, client, transport = served
    caplog.set_level(logging.INFO, logger="agent.rpc.server")
    rabbitmqctl("close_all_connections", "--vhost", rabbit_vhost[0], "test: broker restart")
    wait_for(lambda: not server.consuming.is_set(), what="the loss")
    wait_for(lambda: server.consuming.is_set(), what="the reconnection")
    client.close()
    assert client.call(host, "stop_instance", "6.0", RequestContext.new(), timeout=30,
                       instance="u5") == {"stopped": "u5"}
    messages = [r.getMessage() for r in caplog.records if r.name == "agent.rpc.server"]
    assert len([m for m in messages if "unreachable" in m]) == 1
    assert len([m for m in messages if "reachable again" in m]) == 1
    assert server.is_healthy()


def test_one_server_serves_many_hosts_each_through_its_own_dispatcher(rabbit_vhost):
    """`agent fleet`'s use: one connection consuming several hosts' queues, a host added while
    the server runs is consumed too, each message runs on the dispatcher of its queue's host,
    and again after the connection is lost."""
    transport = parse(rabbit_vhost[1])
    hosts = [unique_host("m") for _ in range(3)]
    endpoints = {host: Endpoint() for host in hosts}
    server = RpcServer(transport, backoff=(0.2, 1.0), name="fleet-rpc")
    for host in hosts[:2]:
        server.add_host(host, Dispatcher(endpoints[host], ("stop_instance",)))
    try:
        assert server.start() and server.queues_consumed == 2
        server.add_host(hosts[2], Dispatcher(endpoints[hosts[2]], ("stop_instance",)))
        wait_for(lambda: server.queues_consumed == 3, what="the added host's queue")
        with RpcClient(transport) as client:
            for host in hosts:
                client.cast(host, "stop_instance", "6.0", RequestContext.new(),
                            instance=f"on-{host}")
            wait_for(lambda: all(e.calls for e in endpoints.values()), what="the casts")
            assert {h: [c[1] for c in e.calls] for h, e in endpoints.items()} == {
                h: [f"on-{h}"] for h in hosts}
            rabbitmqctl("close_all_connections", "--vhost", rabbit_vhost[0], "test: restart")
            wait_for(lambda: not server.consuming.is_set(), what="the loss")
            wait_for(lambda: server.consuming.is_set(), what="the reconnection")
            client.close()
            assert client.call(hosts[2], "stop_instance", "6.0", RequestContext.new(),
                               timeout=30, instance="again") == {"stopped": "again"}
        assert [c[1] for c in endpoints[hosts[2]].calls] == [f"on-{hosts[2]}", "again"]
        assert server.queues_consumed == 3
        assert server.counts() == {"requests": 4, "failed": 0, "refused": 0, "dropped": 0}
        for host in hosts:
            assert queue_counts(transport, f"compute.{host}") == 0
    finally:
        server.stop()
