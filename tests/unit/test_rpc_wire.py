"""The compute RPC wire format: envelope, context, requests, replies, versions."""

from __future__ import annotations

import json

import pytest

from agent.context import RequestContext
from agent.rpc import wire
from agent.rpc.transport import TransportURLError, parse, url_for


def nova_cast_body() -> bytes:
    """A stop_instance cast as nova's ComputeAPI writes it (keys and nesting as on the wire)."""
    inner = {
        "method": "stop_instance", "version": "6.0", "_unique_id": "0f" * 16,
        "args": {"instance": {"nova_object.name": "Instance", "nova_object.version": "2.8",
                              "nova_object.data": {"uuid": "u-1", "host": "c1"}},
                 "clean_shutdown": True},
        "_context_request_id": "req-abc", "_context_global_request_id": "req-glob",
        "_context_user_id": "alice", "_context_project_id": "p1", "_context_user": "alice",
        "_context_tenant": "p1", "_context_roles": ["admin", "member"],
        "_context_is_admin": True, "_context_auth_token": "tok", "_context_read_only": False,
    }
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)}).encode()


def test_nova_cast_decodes_with_its_context():
    request = wire.decode_request(nova_cast_body())
    assert request.method == "stop_instance" and request.version == "6.0"
    assert request.args["clean_shutdown"] is True
    assert request.args["instance"]["nova_object.data"]["uuid"] == "u-1"
    assert not request.is_call
    ctx = request.context
    assert (ctx.request_id, ctx.global_request_id, ctx.user_id, ctx.project_id) == (
        "req-abc", "req-glob", "alice", "p1")
    assert ctx.roles == ("admin", "member") and ctx.is_admin
    assert ctx.log_prefix() == "req-glob req-abc alice p1"
    assert "tok" not in repr(ctx)


def test_context_flattened_back_is_the_one_received():
    ctx = wire.decode_request(nova_cast_body()).context
    flat = wire.context_to_wire(ctx)
    assert flat["_context_auth_token"] == "tok" and flat["_context_read_only"] is False
    assert wire.context_from_wire(flat) == ctx
    assert wire.context_from_wire(flat).extra == ctx.extra


def test_context_without_request_id_gets_one():
    ctx = wire.context_from_wire({})
    assert ctx.request_id.startswith("req-") and ctx.global_request_id is None
    assert ctx.log_prefix().startswith("- req-")


def test_call_round_trip_and_reply():
    ctx = RequestContext.new(user_id="u", project_id="p")
    body = wire.encode_request(ctx, "get_console", "6.0", {"x": 1}, msg_id="m1",
                               reply_q="reply_1", timeout=30)
    request = wire.decode_request(body)
    assert request.is_call and (request.msg_id, request.reply_q, request.timeout) == (
        "m1", "reply_1", 30)
    assert request.context == ctx and request.args == {"x": 1}
    reply = wire.decode_reply(wire.encode_reply("m1", {"ok": True}))
    assert (reply.msg_id, reply.result, reply.failure, reply.ending) == (
        "m1", {"ok": True}, None, True)


def test_failure_reply_carries_class_module_message_and_traceback():
    try:
        raise KeyError("instance")
    except KeyError as exc:
        failure = wire.failure_of(exc)
    reply = wire.decode_reply(wire.encode_reply("m2", failure=failure))
    assert reply.failure["class"] == "KeyError" and reply.failure["module"] == "builtins"
    assert reply.failure["message"] == "'instance'"
    assert any("raise KeyError" in line for line in reply.failure["tb"])
    # as oslo.messaging sends it: failure is a JSON string inside the inner message
    inner = json.loads(json.loads(wire.encode_reply("m2", failure=failure))["oslo.message"])
    assert isinstance(inner["failure"], str) and inner["ending"] is True


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfe", "not UTF-8"),
    (b"stop it", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"method": "stop_instance"}', "not an oslo 2.0 envelope"),
    (b'{"oslo.version": "1.0", "oslo.message": "{}"}', "envelope version '1.0'"),
    (b'{"oslo.version": "2.0", "oslo.message": {"method": "x"}}', "not a JSON string"),
    (b'{"oslo.version": "2.0", "oslo.message": "{oops"}', "oslo.message is not JSON"),
    (b'{"oslo.version": "2.0", "oslo.message": "[]"}', "oslo.message is not a JSON object"),
    (b'{"oslo.version": "2.0", "oslo.message": "{}"}', "no method name"),
    (b'{"oslo.version": "2.0", "oslo.message": "{\\"method\\": \\"m\\", \\"args\\": []}"}',
     "args is not a JSON object"),
    (b'{"oslo.version": "2.0", "oslo.message": "{\\"method\\": \\"m\\", \\"_msg_id\\": \\"x\\"}"}',
     "needs both _msg_id and _reply_q"),
    (b'{"oslo.version": "2.0", "oslo.message": '
     b'"{\\"method\\": \\"m\\", \\"_context_roles\\": \\"admin\\"}"}', "roles is not a list"),
])
def test_malformed_bodies_are_refused_with_the_reason(body, reason):
    with pytest.raises(wire.BadMessage, match=reason):
        wire.decode_request(body)


@pytest.mark.parametrize("requested, ok", [
    ("6.0", True), ("6", True), ("6.1", False), ("5.0", False), ("7.0", False),
    ("six", False), ("6.x", False)])
def test_version_check_same_major_minor_up_to_served(requested, ok):
    if ok:
        wire.check_version(requested, (6, 0))
    else:
        with pytest.raises(wire.UnsupportedVersion):
            wire.check_version(requested, (6, 0))
    wire.check_version("6.3", (6, 5))


def test_transport_url_forms():
    t = parse("rabbit://guest:pw@h1:5672,guest:pw@h2:5673/")
    assert t.urls == ("amqp://guest:pw@h1:5672/%2F", "amqp://guest:pw@h2:5673/%2F")
    assert t.virtual_host == "/" and "pw" not in t.shown
    assert parse("rabbit://u:p@h:5672/nova").virtual_host == "nova"
    assert parse("amqp://u:p@h/v%2F1").virtual_host == "v/1"
    sqla = parse("sqla+sqlite:////var/lib/agent/broker.sqlite")
    assert sqla.virtual and sqla.urls == ("sqla+sqlite:////var/lib/agent/broker.sqlite",)
    assert not parse("rabbit://u:p@h/").virtual


def test_the_default_transport_is_the_sqlite_broker_file_only_with_a_sqlite_database(tmp_path):
    from agent.config import load_config

    sqlite = load_config(None, {("DEFAULT", "state_path"): str(tmp_path)})
    assert url_for(sqlite) == f"sqla+sqlite:///{tmp_path}/broker.sqlite"
    server = load_config(None, {("DEFAULT", "state_path"): str(tmp_path),
                                ("database", "connection"): "postgresql://u:p@db/nova"})
    assert url_for(server) is None
    both = load_config(None, {("database", "connection"): "postgresql://u:p@db/nova",
                              ("DEFAULT", "transport_url"): "rabbit://u:p@h/"})
    assert url_for(both) == "rabbit://u:p@h/"
    elsewhere = load_config(None, {("DEFAULT", "state_path"): str(tmp_path),
                                   ("database", "connection"): "sqlite:////srv/db/nova.sqlite"})
    assert url_for(elsewhere) == "sqla+sqlite:////srv/db/broker.sqlite"


def test_agent_api_and_agent_server_choose_the_same_transport(tmp_path):
    """One choice for both front doors: the embedded default (SQLite, no transport_url) casts
    on the SQLite broker file beside the database, which the agent consumes; a database server
    without transport_url has none (the API answers 503, `agent server` refuses)."""
    from agent.api.server import rpc_client
    from agent.commands.server import _caster
    from agent.config import load_config
    from agent.errors import UsageError

    sqlite = load_config(None, {("DEFAULT", "state_path"): str(tmp_path)})
    with rpc_client(sqlite) as api, _caster(sqlite) as cli:
        assert api.transport == cli.transport == parse(
            f"sqla+sqlite:///{tmp_path}/broker.sqlite")
    rabbit = load_config(None, {("DEFAULT", "state_path"): str(tmp_path),
                                ("DEFAULT", "transport_url"): "rabbit://u:p@h/v"})
    with rpc_client(rabbit) as api, _caster(rabbit) as cli:
        assert api.transport == cli.transport == parse("rabbit://u:p@h/v")
    server = load_config(None, {("DEFAULT", "state_path"): str(tmp_path),
                                ("database", "connection"): "postgresql://u:p@db/nova"})
    assert rpc_client(server) is None
    with pytest.raises(UsageError, match="no transport_url"):
        _caster(server)


@pytest.mark.parametrize("url, reason", [
    ("kafka://u:secret@h:9092/", "expected a URL of scheme rabbit"),
    ("rabbit://u:secret@:5672/", "expected a host name for every broker"),
    ("rabbit://u:secret@h:amqp/", "expected a port number after 'h'"),
    ("sqla+sqlite://u:secret@h", r"expected sqla\+sqlite:///PATH"),
])
def test_bad_transport_urls_are_refused_without_the_password(url, reason):
    with pytest.raises(TransportURLError, match=reason) as info:
        parse(url)
    assert "secret" not in str(info.value)


def test_bad_transport_url_in_the_configuration_is_one_line_naming_it():
    from agent.config import RawValue, load_config
    from agent.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(None, {("DEFAULT", "transport_url"):
                           RawValue("kafka://u:secret@h:9092/", "--transport-url")})
    assert str(info.value) == ("--transport-url: [DEFAULT] transport_url = "
                               "'kafka://u:***@h:9092/': expected a URL of scheme rabbit (or "
                               "amqp), as nova's transport_url")
    assert info.value.exit_code == 2
    good = load_config(None, {("DEFAULT", "transport_url"): "rabbit://u:pw@h:5672/nova"})
    assert good.transport_url == "rabbit://u:pw@h:5672/nova"
