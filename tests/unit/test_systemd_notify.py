"""The notify protocol against a real unix datagram socket (what systemd listens on)."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from agent.systemd import Notifier, socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def receive(sock) -> str:
    return sock.recv(4096).decode()


def test_ready_status_watchdog_stopping_reach_the_socket(listener):
    path, sock = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.status("registering the service")
    assert notifier.ready(status="running")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert receive(sock) == "STATUS=registering the service"
    assert receive(sock) == "READY=1\nSTATUS=running"
    assert receive(sock) == "WATCHDOG=1"
    assert receive(sock) == "STOPPING=1"


def test_abstract_socket_address_is_used():
    name = f"agent-test-{uuid.uuid4()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(100) == b"READY=1"


def test_status_with_newlines_stays_one_assignment(listener):
    path, sock = listener
    Notifier(path).status("line one\nline two")
    assert receive(sock) == "STATUS=line one line two"


def test_without_notify_socket_every_call_is_a_no_op():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


@pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "@"],
                         ids=["relative", "vsock", "empty-abstract"])
def test_unsupported_notify_socket_is_refused_with_a_warning(value, caplog):
    caplog.set_level(logging.WARNING)
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    assert value in caplog.text


def test_send_failure_never_raises_and_is_logged_once_then_recovery_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.systemd")
    path = str(tmp_path / "later.sock")
    notifier = Notifier(path)
    assert notifier.watchdog() is False  # nobody listens yet
    assert notifier.watchdog() is False
    failures = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(failures) == 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        assert notifier.watchdog() is True
        assert notifier.watchdog() is True
        assert sock.recv(100) == b"WATCHDOG=1"
    recoveries = [r for r in caplog.records if "works again" in r.getMessage()]
    assert len(recoveries) == 1


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "2500000"}, 2.5),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"}, None),
], ids=["unset", "30s", "fraction", "zero", "garbage", "our-pid", "other-pid", "bad-pid"])
def test_watchdog_interval(environ, expected):
    assert watchdog_interval(environ) == expected


def test_socket_address_maps_abstract_names():
    assert socket_address("@x") == "\0x"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
