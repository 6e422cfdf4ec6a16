"""The firewall against the real iptables-save / iptables-restore (and ip6tables-*), run inside a
private network namespace so the host's rules are never touched.

Each test gets a fresh namespace: a `unshare -n sleep infinity` process, entered with
`nsenter --net=/proc/PID/ns/net`. Every test runs twice: with the commands the system provides
under their plain names (what the agent runs; on Debian 12 the nf_tables variant) and with the
iptables-legacy-* commands. Needs root; tier 'netns'.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest

from agent.errors import FirewallError
from agent.network.executor import SubprocessExecutor
from agent.network.firewall import IptablesFirewall
from agent.network.iptables import IptablesManager
from tests.agent_process import DEADLINE, wait_for
from tests.functional.netns import (VARIANTS, make_firewall, restores, save, spawn_netns,
                                    uuid_of, vifs_of)

pytestmark = pytest.mark.netns


def host_tables() -> list[str]:
    """The host's filter tables as both variants see them."""
    out = []
    for tool in (tools[family][0] for tools in VARIANTS.values() for family in (4, 6)):
        text = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
        out.extend(line for line in text.splitlines() if not line.startswith("#"))
    return out


def start(firewall, numbers) -> None:
    with firewall.defer_apply():
        for i in numbers:
            firewall.prepare_instance(uuid_of(i), f"vm-{i}", vifs_of(i))


def test_rules_land_in_the_namespace_and_not_on_the_host(executor):
    host_before = host_tables()
    firewall = make_firewall(executor)
    start(firewall, [1, 2])
    chain = firewall.manager.hashed_chain_name(f"{uuid_of(1)}/port-1")
    v4, v6 = save(executor, 4), save(executor, 6)
    assert "-A FORWARD -j cagent-fwd" in v4 and "-A FORWARD -j cagent-fwd" in v6
    assert f"-A cagent-fwd -d 10.0.0.1/32 -m comment --comment {uuid_of(1)} -j {chain}" in v4
    assert f"-A {chain} -p tcp -m tcp --dport 22 -j ACCEPT" in v4
    assert f"-A {chain} -s 192.0.2.0/24 -p udp -m udp --dport 5000:5100 -j ACCEPT" in v4
    assert f"-A cagent-fwd -d 2001:db8::1/128 -m comment --comment {uuid_of(1)} -j {chain}" \
        in v6
    assert f"-A {chain} -p ipv6-icmp -j ACCEPT" in v6
    assert f"-A {chain} -j DROP" in v4 and f"-A {chain} -j DROP" in v6
    assert host_tables() == host_before
    assert not [line for line in host_tables() if "cagent" in line]


@pytest.mark.parametrize("count", [1, 300])
def test_one_restore_per_family_whatever_the_instance_count(executor, count):
    firewall = make_firewall(executor)
    start(firewall, range(count))
    assert restores(executor, 4) == 1
    assert restores(executor, 6) == 1
    chains = {line for line in save(executor, 4) if line.startswith(":cagent-i")}
    assert len(chains) == count
    # a second start-up with nothing changed finds the tables up to date: no restore at all
    executor.clear()
    again = make_firewall(executor)
    start(again, range(count))
    assert restores(executor, 4) == 0 and restores(executor, 6) == 0


def test_chains_of_instances_that_are_gone_are_removed(executor):
    firewall = make_firewall(executor)
    start(firewall, range(5))
    gone = [firewall.manager.hashed_chain_name(f"{uuid_of(i)}/port-{i}") for i in (3, 4)]
    firewall.retain_only([uuid_of(i) for i in range(3)])
    for family in (4, 6):
        text = "\n".join(save(executor, family))
        assert not [chain for chain in gone if chain in text]
        assert text.count(":cagent-i") == 3
    # after a restart, an agent that only knows instances 0 and 1 drops the others' chains
    restarted = make_firewall(executor)
    start(restarted, [0, 1])
    assert "\n".join(save(executor, 4)).count(":cagent-i") == 2
    assert "10.0.0.2/32" not in "\n".join(save(executor, 4))


FOREIGN = {
    4: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
       ":other-owner - [0:0]\n:cagentx - [0:0]\n"
       "-A FORWARD -s 198.51.100.0/24 -j ACCEPT\n-A FORWARD -j other-owner\n"
       "-A other-owner -p tcp -m tcp --dport 443 -j ACCEPT\n-A cagentx -j RETURN\nCOMMIT\n",
    6: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
       ":other-owner - [0:0]\n-A FORWARD -s 2001:db8:ffff::/48 -j ACCEPT\n"
       "-A other-owner -j RETURN\nCOMMIT\n",
}


def test_other_owners_rules_and_chains_survive_untouched(executor):
    for family, text in FOREIGN.items():
        executor.inner.run([executor.tools[family][1]], text)
    before = {family: save(executor, family) for family in (4, 6)}
    firewall = make_firewall(executor)
    start(firewall, range(3))
    firewall.retain_only([uuid_of(0)])
    for family in (4, 6):
        after = save(executor, family)
        assert [line for line in after if "cagent-" not in line] == before[family]
        assert after.index("-A FORWARD -j cagent-fwd") < min(
            i for i, line in enumerate(after) if line.startswith("-A FORWARD -s"))
    assert ":cagentx - [0:0]" in save(executor, 4)  # same letters, no dash: not ours


def test_failed_restore_keeps_earlier_rules_and_logs_the_lines_around(executor, caplog):
    firewall = make_firewall(executor)
    start(firewall, range(3))
    before = {family: save(executor, family) for family in (4, 6)}
    manager = firewall.manager
    chain = manager.hashed_chain_name(f"{uuid_of(1)}/port-1")
    good = list(manager.chains(4)[chain])
    # A line the validation layer would refuse, put straight into the model: the target
    # does not exist, so iptables-restore rejects the whole table.
    with caplog.at_level(logging.ERROR, logger="agent.network.iptables"):
        with pytest.raises(FirewallError, match="restore failed at line .*NOSUCHTARGET'"):
            with manager.defer_apply():
                manager.set_rules(4, chain, good[:2] + ["-j NOSUCHTARGET"] + good[2:])
                manager.set_rules(6, chain, ["-j NOSUCHTARGET6"])
    assert {family: save(executor, family) for family in (4, 6)} == before
    failing = [r for r in caplog.records if "failed; the previous" in r.getMessage()]
    assert len(failing) == 2
    v4 = next(r.getMessage() for r in failing if "IPv4" in r.getMessage())
    lines = v4.splitlines()
    marked = [line for line in lines if line.startswith(">")]
    assert len(marked) == 1 and marked[0].endswith(f"-A {chain} -j NOSUCHTARGET")
    assert any(line.endswith(f"-A {chain} {good[1]}") for line in lines)  # the line before
    assert any(line.endswith(f"-A {chain} {good[2]}") for line in lines)  # and after
    # once the model is right again, the next apply goes through
    with manager.defer_apply():
        manager.set_rules(4, chain, good)
        manager.set_rules(6, chain, ["-j DROP"])
    assert f"-A {chain} -j DROP" in save(executor, 6)


# -- two callers: start-up defers while an operation applies ------------------------------------

def chains_in_kernel(executor, firewall, numbers) -> dict[int, bool]:
    """Per instance: whether the kernel holds its chain and the jump to it (IPv4)."""
    v4 = save(executor, 4)
    out = {}
    for i in numbers:
        chain = firewall.manager.hashed_chain_name(f"{uuid_of(i)}/port-{i}")
        out[i] = f":{chain} - [0:0]" in v4 and any(
            line.startswith("-A cagent-fwd -d ") and line.endswith(f"-j {chain}") for line in v4)
    return out


def run_beside_start_up(firewall, operation, start_up_rest):
    """Start-up (this thread) holds its deferral block open while `operation` runs on another
    thread; once that thread waits for the block to end, `start_up_rest` runs inside the
    block. Returns (what the operation returned or raised, start-up's FirewallError or None).
    """
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = operation()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    error = None
    try:
        with firewall.defer_apply():
            firewall.prepare_instance(uuid_of(1), "vm-1", vifs_of(1))
            worker.start()
            waiting = wait_for(
                lambda: firewall.manager.waiting_callers == 1 or not worker.is_alive())
            assert waiting and worker.is_alive(), f"the operation did not wait: {outcome}"
            start_up_rest()
    except FirewallError as exc:
        error = exc
    worker.join(DEADLINE)
    assert not worker.is_alive()
    return outcome, error


def test_operation_during_start_up_returns_with_its_rules_in_the_kernel(executor):
    start(make_firewall(executor), [1, 2])  # what the previous agent process left
    executor.clear()
    firewall = make_firewall(executor)  # a new process: start-up on one thread, ...

    def operation():  # ... an operation on another
        firewall.prepare_instance(uuid_of(3), "vm-3", vifs_of(3))
        return chains_in_kernel(executor, firewall, [1, 2, 3])

    def start_up_rest():
        # While start-up's model is half built, nothing of it is loaded: the previous rules
        # of instance 2, not yet prepared again, are still in the kernel.
        assert chains_in_kernel(executor, firewall, [1, 2, 3]) == {1: True, 2: True, 3: False}
        firewall.prepare_instance(uuid_of(2), "vm-2", vifs_of(2))
        # start-up's list of this host's instances does not know the operation's instance:
        # its rules are not start-up's to drop
        firewall.retain_only([uuid_of(1), uuid_of(2)])

    outcome, error = run_beside_start_up(firewall, operation, start_up_rest)
    assert error is None
    assert outcome == {"value": {1: True, 2: True, 3: True}}
    # start-up's one apply carried the operation's rules: still one restore per family
    assert (restores(executor, 4), restores(executor, 6)) == (1, 1)


def test_operation_learns_when_the_apply_carrying_its_rules_failed(executor):
    firewall = make_firewall(executor)
    manager = firewall.manager

    def operation():
        firewall.prepare_instance(uuid_of(3), "vm-3", vifs_of(3))

    def start_up_rest():
        # A rule iptables-restore rejects, put straight into the model: every apply fails.
        manager.set_rules(4, manager.chain_name("broken"), ["-j NOSUCHTARGET"])

    outcome, error = run_beside_start_up(firewall, operation, start_up_rest)
    assert isinstance(error, FirewallError)
    assert isinstance(outcome.get("error"), FirewallError)  # not a silent success
    assert chains_in_kernel(executor, firewall, [1, 3]) == {1: False, 3: False}


# -- packets: what a user of an instance notices -------------------------------------------------
# Three namespaces: a client, a router whose FORWARD chain the firewall manages (the compute
# host), and an instance listening on tcp 22 and 2222 over IPv4 and IPv6. Connections are real
# TCP handshakes from the client through the router.

SERVER = """
import socket, sys, threading
def serve(family, address, port):
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, port))
    sock.listen(64)
    ready.release()
    while True:
        sock.accept()[0].close()
ready = threading.Semaphore(0)
for port in (22, 2222):
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        threading.Thread(target=serve, args=(family, address, port), daemon=True).start()
for _ in range(4):
    ready.acquire()
print("ready", flush=True)
sys.stdin.read()
"""

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError:
    sys.exit(1)
"""

# A connection that is let through completes in milliseconds; a dropped SYN is never answered,
# so this is how long a probe waits before it counts as blocked.
PROBE_TIMEOUT = 5.0
TARGETS = [("10.0.0.5", 22), ("10.0.0.5", 2222), ("2001:db8::5", 22), ("2001:db8::5", 2222)]


def sh(ns: str, *commands: str) -> None:
    for command in commands:
        subprocess.run(["nsenter", f"--net={ns}", *command.split()], check=True,
                       capture_output=True)


@pytest.fixture
def routed(netns_tier):
    """(router nsenter prefix, client namespace path), the instance listening behind."""
    procs: list = []
    try:
        router, client, instance = (spawn_netns(procs) for _ in range(3))
        sh(router, "ip link add rc type veth peer name vc", "ip link add ri type veth peer name vi",
           f"ip link set vc netns {client.split('/')[2]}",
           f"ip link set vi netns {instance.split('/')[2]}",
           "ip addr add 10.1.0.1/24 dev rc", "ip addr add 10.0.0.1/24 dev ri",
           "ip addr add 2001:db8:1::1/64 dev rc nodad", "ip addr add 2001:db8::1/64 dev ri nodad",
           "ip link set rc up", "ip link set ri up",
           "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
        for ns, dev, v4, v6, gw4, gw6 in (
                (client, "vc", "10.1.0.2/24", "2001:db8:1::2/64", "10.1.0.1", "2001:db8:1::1"),
                (instance, "vi", "10.0.0.5/24", "2001:db8::5/64", "10.0.0.1", "2001:db8::1")):
            sh(ns, f"ip addr add {v4} dev {dev}", f"ip addr add {v6} dev {dev} nodad",
               f"ip link set {dev} up", "ip link set lo up", f"ip route add default via {gw4}",
               f"ip -6 route add default via {gw6}")
        server = subprocess.Popen(["nsenter", f"--net={instance}", sys.executable, "-c", SERVER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(server)
        assert server.stdout.readline().strip() == "ready"
        yield ["nsenter", f"--net={router}"], client
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def reachable(client: str) -> dict[tuple[str, int], bool]:
    """Which of TARGETS accept a TCP connection from the client (probed concurrently)."""
    probes = {target: subprocess.Popen(
        ["nsenter", f"--net={client}", sys.executable, "-c", PROBE, target[0], str(target[1]),
         str(PROBE_TIMEOUT)]) for target in TARGETS}
    return {target: proc.wait() == 0 for target, proc in probes.items()}


def test_instance_gets_only_the_traffic_its_rules_allow(routed, tools):
    router, client = routed
    assert all(reachable(client).values())  # no firewall yet: everything gets through
    firewall = IptablesFirewall(IptablesManager("cagent", SubprocessExecutor(router),
                                                tools=tools))
    uuid = uuid_of(7)
    firewall.prepare_from_network_info(uuid, "vm-7", [{
        "id": "port-7", "address": "fa:16:3e:00:00:07",
        "fixed_ips": [{"address": "10.0.0.5"}, {"address": "2001:db8::5"}],
        "rules": [{"protocol": "tcp", "port_min": 22},
                  {"protocol": "tcp", "port_min": 22, "ethertype": 6},
                  # 2222 only from a network the client is not in
                  {"protocol": "tcp", "port_min": 2222, "source_cidr": "192.0.2.0/24"}]}])
    assert reachable(client) == {("10.0.0.5", 22): True, ("10.0.0.5", 2222): False,
                                 ("2001:db8::5", 22): True, ("2001:db8::5", 2222): False}
    firewall.remove_instance(uuid)
    assert all(reachable(client).values())


ECHO = """
import os, socket, struct, sys, time
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident, payload = os.getpid() & 0xFFFF, b"probe..."
header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, 1) + payload
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.sendto(packet, (sys.argv[1], 0))
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data = sock.recv(2048)
    except socket.timeout:
        break
    icmp = data[(data[0] & 0x0F) * 4:]
    if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        sys.exit(0)
sys.exit(1)
"""


def answers_echo(client: str, address: str) -> bool:
    """Whether an ICMP echo request from the client to `address` gets its reply."""
    return subprocess.run(["nsenter", f"--net={client}", sys.executable, "-c", ECHO, address,
                           str(PROBE_TIMEOUT)]).returncode == 0


def test_icmp_type_255_rule_does_not_let_an_echo_request_through(routed, tools, caplog):
    # iptables reads ICMP type 255 as "any type": the rule is refused rather than rendered, so
    # an echo request is dropped while the instance's other rules apply.
    router, client = routed
    assert answers_echo(client, "10.0.0.5")  # no firewall yet
    firewall = IptablesFirewall(IptablesManager("cagent", SubprocessExecutor(router),
                                                tools=tools))
    uuid = uuid_of(8)
    vif = {"id": "port-8", "address": "fa:16:3e:00:00:08", "fixed_ips": [{"address": "10.0.0.5"}]}
    assert firewall.prepare_from_network_info(uuid, "vm-8", [dict(vif, rules=[
        {"protocol": "icmp", "port_min": 255, "port_max": 255},
        {"protocol": "tcp", "port_min": 22}])])
    assert f"instance {uuid}: network_info [0].rules[0].port_min" in caplog.text
    assert not answers_echo(client, "10.0.0.5")
    assert reachable(client)[("10.0.0.5", 22)]
    # The same chain with an echo-request rule lets it through: the probe can succeed.
    assert firewall.prepare_from_network_info(uuid, "vm-8", [dict(vif, rules=[
        {"protocol": "icmp", "port_min": 8, "port_max": 0}])])
    assert answers_echo(client, "10.0.0.5")


def test_rules_are_loaded_exactly_as_rendered(executor):
    # Every accepted form, restored for real and saved back: the kernel prints each rule
    # exactly as rendered, so a restart with nothing changed restores nothing.
    from tests.unit.test_network_info import EXACT

    rules = [stored for stored, _family, _specs in EXACT.values()]
    vif = {"id": "port-1", "address": "fa:16:3e:00:00:01",
           "fixed_ips": [{"address": "10.0.0.1"}, {"address": "2001:db8::1"}], "rules": rules}
    firewall = make_firewall(executor)
    assert firewall.prepare_from_network_info(uuid_of(1), "vm-1", [vif])
    chain = firewall.manager.hashed_chain_name(f"{uuid_of(1)}/port-1")
    for family in (4, 6):
        saved = [line for line in save(executor, family) if line.startswith(f"-A {chain} ")]
        wanted = [spec for _stored, fam, specs in EXACT.values() if fam == family
                  for spec in specs]
        assert saved[2:-1] == [f"-A {chain} {spec}" for spec in wanted]
    executor.clear()
    assert make_firewall(executor).prepare_from_network_info(uuid_of(1), "vm-1", [vif])
    assert (restores(executor, 4), restores(executor, 6)) == (0, 0)
