"""The API's own rules as tables: microversion headers, the bind rule, fault bodies."""

from __future__ import annotations

import json

import pytest

from agent.api import faults, microversion as mv
from agent.api.faults import ApiError
from agent.api.server import check_access, parse_bind
from agent.errors import ConfigError


@pytest.mark.parametrize("headers, expected", [
    ({}, "2.1"),
    ({"OpenStack-API-Version": "compute 2.53"}, "2.53"),
    ({"openstack-api-version": "compute 2.11"}, "2.11"),
    ({"X-OpenStack-Nova-API-Version": "2.11"}, "2.11"),
    ({"OpenStack-API-Version": "compute 2.20", "X-OpenStack-Nova-API-Version": "2.11"},
     "2.20"),
    ({"OpenStack-API-Version": "volume 3.5", "X-OpenStack-Nova-API-Version": "2.3"}, "2.3"),
    ({"OpenStack-API-Version": "volume 3.5, compute 2.40"}, "2.40"),
    ({"OpenStack-API-Version": "compute latest"}, str(mv.MAX_VERSION)),
    ({"X-OpenStack-Nova-API-Version": "latest"}, str(mv.MAX_VERSION)),
    ({"OpenStack-API-Version": "compute 2.0"}, None),
], ids=["none", "new", "new-lowercase", "legacy", "new-wins", "other-service", "list",
        "latest", "legacy-latest", "below-min"])
def test_requested_version(headers, expected):
    if expected is None:
        with pytest.raises(ApiError) as caught:
            mv.requested(headers)
        assert caught.value.code == 406
    else:
        assert str(mv.requested(headers)) == expected


@pytest.mark.parametrize("text, code", [
    ("2.54", 406), ("3.0", 406), ("1.1", 406), ("2", 400), ("2.x", 400), ("v2.1", 400),
    ("2.01", 400), ("", 400)],
    ids=["above-max", "major-above", "major-below", "no-minor", "letters", "prefix",
         "leading-zero", "empty"])
def test_bad_versions(text, code):
    with pytest.raises(ApiError) as caught:
        mv.parse(text)
    assert caught.value.code == code


def test_maximum_is_at_least_2_53():
    assert mv.MAX_VERSION >= mv.Version(2, 53)


def test_406_is_a_compute_fault():
    assert json.loads(faults.body(406, "m")) == {"computeFault": {"code": 406, "message": "m"}}


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8774", ("127.0.0.1", 8774)), ("[::1]:8774", ("::1", 8774)),
    ("localhost:1", ("localhost", 1)), ("0.0.0.0:65535", ("0.0.0.0", 65535))],
    ids=["v4", "v6", "localhost", "any"])
def test_parse_bind(text, expected):
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
                                  "example.org:80", ":8774", "127.0.0.1:x"])
def test_parse_bind_refuses_naming_the_value(text):
    with pytest.raises(ConfigError) as caught:
        parse_bind(text, "--bind")
    assert str(caught.value).startswith(f"--bind = {text!r}: ")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "::1", "localhost"])
def test_noauth_serves_loopback(host):
    check_access(host, 8774, "noauth")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_noauth_refuses_other_addresses(host):
    with pytest.raises(ConfigError) as caught:
        check_access(host, 8774, "noauth")
    assert caught.value.exit_code == 2
    assert f"{host}:8774 is not a loopback address" in str(caught.value)
