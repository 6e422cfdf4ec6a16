"""The RPC client on a real RabbitMQ: casts land in compute.<host> on exchange nova with nova's
flags and message properties; calls get their reply, failure or timeout."""

from __future__ import annotations

import threading

import kombu
import pytest

from agent.context import RequestContext
from agent.rpc import wire
from agent.rpc.client import RemoteError, RpcClient, RpcTimeout, exchange
from agent.rpc.transport import parse
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)


def host_queue(conn, host):
    queue = kombu.Queue(f"compute.{host}", exchange=exchange(), routing_key=f"compute.{host}",
                        durable=False, auto_delete=False, channel=conn.default_channel)
    queue.declare()
    return queue


def get_one(queue, seconds=30.0):
    """The next message of `queue` (waiting up to `seconds` for the broker to route it)."""
    for _ in range(int(seconds / 0.05)):
        message = queue.get(no_ack=True)
        if message is not None:
            return message
        threading.Event().wait(0.05)
    return None


def test_cast_reaches_the_host_queue_as_nova_sends_it(rabbit_vhost):
    transport = parse(rabbit_vhost[1])
    with transport.connection() as conn, RpcClient(transport) as client:
        c1, c2 = unique_host(), unique_host()
        queue = host_queue(conn, c1)
        ctx = RequestContext.new(user_id="alice", project_id="p1",
                                      global_request_id="req-g")
        client.cast(c1, "stop_instance", "6.0", ctx, instance={"uuid": "u1"},
                    clean_shutdown=True)
        client.cast(c2, "stop_instance", "6.0", ctx, instance={"uuid": "u2"})  # no queue
        message = get_one(queue)
        assert message is not None and get_one(queue, 0.5) is None
        assert message.properties["delivery_mode"] == 2
        assert message.content_type == "application/json"
        request = wire.decode_request(message.body)
        assert (request.method, request.version, dict(request.args)) == (
            "stop_instance", "6.0", {"instance": {"uuid": "u1"}, "clean_shutdown": True})
        assert request.context == ctx and not request.is_call


def _answer_one(transport, host, answer, ready):
    """A minimal receiver: takes one request from compute.<host>, replies as oslo does."""
    with transport.connection() as conn:
        queue = host_queue(conn, host)
        ready.set()
        message = get_one(queue)
        if message is None:
            return
        request = wire.decode_request(message.body)
        result, failure = answer(request)
        producer = kombu.Producer(conn.default_channel)
        producer.publish(wire.encode_reply(request.msg_id, result, failure), exchange="",
                         routing_key=request.reply_q, content_type="application/json",
                         content_encoding="utf-8")


@pytest.mark.parametrize("kind", ["result", "failure"])
def test_call_gets_the_reply(rabbit_vhost, kind):
    transport = parse(rabbit_vhost[1])

    def answer(request):
        if kind == "result":
            return {"method": request.method, "echo": request.args["n"],
                    "request_id": request.context.request_id}, None
        return None, wire.failure_of(wire.NoSuchMethod(f"no such method {request.method}"))

    ready, c1 = threading.Event(), unique_host()
    receiver = threading.Thread(target=_answer_one, args=(transport, c1, answer, ready))
    receiver.start()
    assert ready.wait(30)
    ctx = RequestContext.new()
    try:
        with RpcClient(transport) as client:
            if kind == "result":
                assert client.call(c1, "echo", "6.0", ctx, timeout=30, n=7) == {
                    "method": "echo", "echo": 7, "request_id": ctx.request_id}
            else:
                with pytest.raises(RemoteError) as info:
                    client.call(c1, "echo", "6.0", ctx, timeout=30, n=7)
                assert info.value.exc_type == "NoSuchMethod"
                assert "no such method echo" in str(info.value)
    finally:
        receiver.join(30)


def test_call_without_a_reply_times_out(rabbit_vhost):
    transport = parse(rabbit_vhost[1])
    with transport.connection() as conn, RpcClient(transport) as client:
        c1 = unique_host()
        queue = host_queue(conn, c1)
        with pytest.raises(RpcTimeout, match=f"no reply to stop_instance from {c1} within 1 s"):
            client.call(c1, "stop_instance", "6.0", RequestContext.new(), timeout=1)
        # the request expires with its timeout (AMQP expiration, as oslo's calls): nothing
        # is left for an agent that starts consuming later
        for _ in range(200):
            if queue.queue_declare(passive=True).message_count == 0:
                break
            threading.Event().wait(0.05)
        assert queue.queue_declare(passive=True).message_count == 0
