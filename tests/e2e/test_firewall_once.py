"""`agent --once` with `firewall_driver = iptables`, run as a process inside a private network
namespace (the real iptables-restore): seven guests with one rule each, interrupted in seven
different ways. Every guest running when start-up ends has its rule in the kernel, the stopped
one has none, and a second start-up leaves the rules of the guests that kept running in place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.agent_process import DEADLINE, REPO_ROOT
from tests.conftest import require_tier
from tests.functional.netns import VARIANTS, netns_missing, spawn_netns

pytestmark = pytest.mark.netns

# name, vm_state, task_state, database power, guest power, old_vm_state -> action, running after
GUESTS = [
    ("running", "active", None, "running", "running", None, "none", True),
    ("powering-on", "stopped", "powering-on", "shutdown", "shutdown", None, "powered-on", True),
    ("reboot-started-off", "active", "reboot_started", "running", "shutdown", None,
     "rebooted-hard", True),
    ("resize-migrating", "active", "resize_migrating", "shutdown", "shutdown", "active",
     "reverted-resize", True),
    ("unpausing", "paused", "unpausing", "paused", "paused", None, "unpaused", True),
    ("stopped", "stopped", None, "shutdown", "shutdown", None, "none", False),
    ("reboot-pending-running", "active", "reboot_pending", "running", "running", None,
     "rebooted-soft", True),
]


def uuid_of(i: int) -> str:
    return f"f1e00000-0000-4000-8000-{i:012d}"


def scenario(guest_power: dict[int, str]) -> str:
    lines = ['[host]', 'hostname = "fw-1"', "vcpus = 8", "memory_mb = 16384", "local_gb = 100",
             'cpu_arch = "x86_64"']
    for i, (name, *_rest) in enumerate(GUESTS):
        lines += ["", "[[domains]]", f'uuid = "{uuid_of(i)}"', f'name = "instance-{i}"',
                  f'power_state = "{guest_power[i]}"']
    for i, (name, vm, task, db_power, _guest, old_vm, _action, _running) in enumerate(GUESTS):
        lines += ["", "[[instances]]", f'uuid = "{uuid_of(i)}"', f'display_name = "{name}"',
                  f'vm_state = "{vm}"', f'power_state = "{db_power}"']
        lines += [f'task_state = "{task}"'] if task else []
        lines += [f'old_vm_state = "{old_vm}"'] if old_vm else []
        lines += [f'network_info = [{{ id = "port-{i}", address = "fa:16:3e:00:02:0{i}", '
                  f'fixed_ips = [{{ address = "10.0.2.{10 + i}" }}], rules = [{{ protocol = '
                  f'"tcp", port_min = {2000 + i} }}] }}]']
    return "\n".join(lines) + "\n"


def agent(ns: str, conf, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(["nsenter", f"--net={ns}", sys.executable, "-m", "agent", "--config",
                           str(conf), *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO_ROOT), timeout=DEADLINE)


def rules(ns: str) -> tuple[set[str], list[str]]:
    """The addresses whose chain holds their one rule, and our part of the IPv4 filter table."""
    text = subprocess.run(["nsenter", f"--net={ns}", "iptables-save", "-t", "filter"],
                          capture_output=True, text=True, check=True).stdout
    ours = [line for line in text.splitlines() if "cagent-" in line]
    filtered = set()
    for line in ours:
        if line.startswith("-A cagent-fwd -d "):
            address, chain = line.split()[3].split("/")[0], line.split()[-1]
            i = int(address.rsplit(".", 1)[1]) - 10
            if f"-A {chain} -p tcp -m tcp --dport {2000 + i} -j ACCEPT" in ours:
                filtered.add(address)
    return filtered, ours


def test_once_gives_every_running_guest_its_rules_and_a_second_start_keeps_them(tmp_path):
    reason = netns_missing(VARIANTS["default"])
    require_tier("netns", reason is None, reason or "")
    procs: list = []
    try:
        ns = spawn_netns(procs)
        path = tmp_path / "scenario.toml"
        path.write_text(scenario({i: g[4] for i, g in enumerate(GUESTS)}), encoding="utf-8")
        conf = tmp_path / "agent.conf"
        conf.write_text(f"[DEFAULT]\nhost = fw-1\nstate_path = {tmp_path / 'state'}\n"
                        f"firewall_driver = iptables\ncompute_driver = fake\n"
                        f"[fakevirt]\nscenario = {path}\n", encoding="utf-8")
        seed = agent(ns, conf, "db", "seed", str(path))
        assert seed.returncode == 0, seed.stderr

        first = agent(ns, conf, "--once", "--format", "json")
        assert first.returncode == 0, first.stderr
        actions = {i["uuid"]: i["action"] for i in json.loads(first.stdout)["instances"]}
        assert actions == {uuid_of(i): g[6] for i, g in enumerate(GUESTS)}
        running = {f"10.0.2.{10 + i}" for i, g in enumerate(GUESTS) if g[7]}
        filtered, before = rules(ns)
        assert filtered == running and len(running) == 6

        # The hypervisor as the first start-up left it (the fake driver reads its guests from
        # the scenario at every start) and every row interrupted the same way again: the
        # guests that kept running through the first start-up keep their rules, and nothing
        # of ours in the kernel changes.
        path.write_text(scenario({i: "running" if g[7] else "shutdown"
                                  for i, g in enumerate(GUESTS)}), encoding="utf-8")
        reseed = agent(ns, conf, "db", "seed", "--replace", str(path))
        assert reseed.returncode == 0, reseed.stderr
        second = agent(ns, conf, "--once", "--format", "json")
        assert second.returncode == 0, second.stderr
        actions = {i["uuid"]: i["action"] for i in json.loads(second.stdout)["instances"]}
        assert actions[uuid_of(6)] == "rebooted-soft"  # reboot_pending, guest running
        filtered, after = rules(ns)
        assert filtered == running
        assert [line.split("] ", 1)[-1] for line in after] == [
            line.split("] ", 1)[-1] for line in before]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
