"""Private network namespaces for the firewall tests (tier 'netns'): fixtures giving a fresh
namespace per test and an executor that runs the real iptables commands inside it, once with the
commands under their plain names (on Debian 12 the nf_tables variant) and once with the
iptables-legacy-* ones. The fixtures are made available to every functional test by conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from agent.network.executor import RecordingExecutor, SubprocessExecutor
from agent.network.firewall import IptablesFirewall
from agent.network.iptables import IptablesManager
from agent.network.network_info import parse_network_info
from tests.conftest import require_tier

VARIANTS = {
    "default": {4: ("iptables-save", "iptables-restore"),
                6: ("ip6tables-save", "ip6tables-restore")},
    "legacy": {4: ("iptables-legacy-save", "iptables-legacy-restore"),
               6: ("ip6tables-legacy-save", "ip6tables-legacy-restore")},
}


def netns_missing(tools) -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private network namespace"
    needed = [*tools[4], *tools[6], "nsenter", "unshare"]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    return f"missing commands: {', '.join(missing)}" if missing else None


@pytest.fixture(params=list(VARIANTS))
def tools(request):
    return VARIANTS[request.param]


@pytest.fixture
def netns_tier(tools):
    reason = netns_missing(tools)
    require_tier("netns", reason is None, reason or "")


@pytest.fixture
def netns(netns_tier):
    """The nsenter prefix of a fresh private network namespace."""
    procs: list = []
    try:
        yield ["nsenter", f"--net={spawn_netns(procs)}"]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def executor(netns, tools):
    executor = RecordingExecutor(SubprocessExecutor(netns))
    executor.tools = tools  # which variant this test runs, for the helpers below
    return executor


def make_firewall(executor) -> IptablesFirewall:
    return IptablesFirewall(IptablesManager("cagent", executor, tools=executor.tools))


def restores(executor, family: int) -> int:
    return executor.count(executor.tools[family][1])


def save(executor, family: int) -> list[str]:
    tool = executor.tools[family][0]
    return [line for line in executor.inner.run([tool]).splitlines()
            if line and not line.startswith("#")]


def spawn_netns(stack: list) -> str:
    """Start a process in a new network namespace (added to `stack`); its namespace path."""
    proc = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    stack.append(proc)
    host_ns = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{proc.pid}/ns/net") != host_ns:
                return f"/proc/{proc.pid}/ns/net"
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    require_tier("netns", False, "unshare -n did not start a network namespace")


# Instance i of a generated host: one VIF with an IPv4 and an IPv6 address and three rules.
def uuid_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def vifs_of(i: int):
    return parse_network_info(uuid_of(i), [{
        "id": f"port-{i}", "address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"},
                      {"address": f"2001:db8::{i:x}"}],
        "rules": [{"protocol": "tcp", "port_min": 22},
                  {"protocol": "icmp", "ethertype": 6},
                  {"protocol": "udp", "port_min": 5000, "port_max": 5100,
                   "source_cidr": "192.0.2.0/24"}]}])
