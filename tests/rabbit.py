"""RabbitMQ as a real test part: each test gets a virtual host of its own (created with
rabbitmqctl, removed afterwards), so tests running in parallel, and other engineers' runs on the
same broker, never see each other's queues. Without a reachable broker (or rabbitmqctl) the
'rabbitmq' tier is missing: skipped, or failed under CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid

import pytest

from tests.conftest import require_tier


def _broker() -> tuple[str, int]:
    """127.0.0.1:5672, or AGENT_TEST_RABBITMQ=HOST:PORT (a broker of one's own; rabbitmqctl
    then needs RABBITMQ_NODENAME naming that broker's node)."""
    host, _, port = os.environ.get("AGENT_TEST_RABBITMQ", "127.0.0.1:5672").rpartition(":")
    return host, int(port)


BROKER = _broker()


def broker_reachable() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=2):
            return True
    except OSError:
        return False


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=60, check=check)


@pytest.fixture(scope="module")
def rabbit_vhost():
    """(vhost name, transport_url) of a new virtual host the guest user may use, one per test
    module (rabbitmqctl takes a second or two per command); tests in a module use host names
    of their own (`unique_host`)."""
    require_tier("rabbitmq", shutil.which("rabbitmqctl") is not None,
                 "rabbitmqctl is not installed")
    require_tier("rabbitmq", broker_reachable(), f"no broker on {BROKER[0]}:{BROKER[1]}")
    vhost = f"agent-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    _CURRENT.append(vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost, f"rabbit://guest:guest@{BROKER[0]}:{BROKER[1]}/{vhost}"
    finally:
        _CURRENT.remove(vhost)
        rabbitmqctl("delete_vhost", vhost, check=False)


_CURRENT: list[str] = []


def current_vhost() -> str:
    """The virtual host of the running test module."""
    return _CURRENT[-1]


def unique_host(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
