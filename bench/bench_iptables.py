"""Benchmark: firewall apply at start-up, deferred (one restore per family) against one restore
per instance, with the real iptables-save/-restore inside a private network namespace.

Run as root:  .venv/bin/python bench/bench_iptables.py [--sizes 1000 5000] [--full] [--legacy]

Every instance has one VIF with an IPv4 and an IPv6 address and three security-group rules, so
each family's table holds 6 rules per instance plus one jump. Columns:
  deferred         all instances prepared inside one defer_apply() block (what init_host does)
  restart          the same again on tables that already hold those rules (nothing restored)
  per-instance     every prepare_instance applies on its own (what happens without deferral).
                   Its cost grows with the table, so the total is quadratic in N; unless --full
                   is given it is ESTIMATED: the cost of one apply is measured at 1/4, 1/2, 3/4
                   and all of N loaded (mean of --samples applies each) and integrated over
                   0..N (trapezoids). --full runs all N applies for real (about N x 2 restores).
Prints a table; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agent.network.executor import SubprocessExecutor  # noqa: E402
from agent.network.firewall import IptablesFirewall  # noqa: E402
from agent.network.iptables import IptablesManager  # noqa: E402
from tests.functional.netns import uuid_of, vifs_of  # noqa: E402


class TimedExecutor:
    """Counts restores and the seconds spent in the commands themselves."""

    def __init__(self, inner):
        self.inner = inner
        self.restores = 0
        self.command_seconds = 0.0

    def run(self, argv, stdin=None):
        start = time.perf_counter()
        try:
            return self.inner.run(argv, stdin)
        finally:
            self.command_seconds += time.perf_counter() - start
            self.restores += argv[0].endswith("-restore")


class Namespace:
    """A private network namespace held open by `unshare -n sleep infinity`."""

    def __enter__(self):
        self.proc = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
        host = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{self.proc.pid}/ns/net") != host:
                    return ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net"]
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise RuntimeError("unshare -n did not start a network namespace")

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


@dataclass
class Result:
    seconds: float
    restores: int
    command_seconds: float
    estimated: bool = False


LEGACY = {4: ("iptables-legacy-save", "iptables-legacy-restore"),
          6: ("ip6tables-legacy-save", "ip6tables-legacy-restore")}
TOOLS = None  # the commands under their plain names, as the agent runs them; --legacy changes it


def firewall_in(prefix_argv) -> tuple[IptablesFirewall, TimedExecutor]:
    executor = TimedExecutor(SubprocessExecutor(prefix_argv))
    return IptablesFirewall(IptablesManager("cagent", executor, tools=TOOLS)), executor


def prepare(firewall, numbers, deferred: bool) -> None:
    if deferred:
        with firewall.defer_apply():
            for i in numbers:
                firewall.prepare_instance(uuid_of(i), f"vm-{i}", vifs_of(i))
    else:
        for i in numbers:
            firewall.prepare_instance(uuid_of(i), f"vm-{i}", vifs_of(i))


def run_deferred(n: int) -> tuple[Result, Result]:
    with Namespace() as prefix:
        firewall, executor = firewall_in(prefix)
        start = time.perf_counter()
        prepare(firewall, range(n), deferred=True)
        first = Result(time.perf_counter() - start, executor.restores, executor.command_seconds)
        firewall, executor = firewall_in(prefix)  # a restarted agent, tables already loaded
        start = time.perf_counter()
        prepare(firewall, range(n), deferred=True)
        again = Result(time.perf_counter() - start, executor.restores, executor.command_seconds)
    return first, again


def run_per_instance_full(n: int) -> Result:
    with Namespace() as prefix:
        firewall, executor = firewall_in(prefix)
        start = time.perf_counter()
        prepare(firewall, range(n), deferred=False)
        return Result(time.perf_counter() - start, executor.restores, executor.command_seconds)


def run_per_instance_estimate(n: int, samples: int) -> Result:
    points = [0]
    costs = [0.0]
    command_costs = [0.0]
    with Namespace() as prefix:
        firewall, executor = firewall_in(prefix)
        loaded = 0
        for quarter in (1, 2, 3, 4):
            target = n * quarter // 4
            prepare(firewall, range(loaded, target - samples), deferred=True)
            executor.command_seconds = 0.0
            start = time.perf_counter()
            prepare(firewall, range(target - samples, target), deferred=False)
            points.append(target)
            costs.append((time.perf_counter() - start) / samples)
            command_costs.append(executor.command_seconds / samples)
            loaded = target
    seconds = sum((points[k] - points[k - 1]) * (costs[k] + costs[k - 1]) / 2
                  for k in range(1, len(points)))
    command = sum((points[k] - points[k - 1]) * (command_costs[k] + command_costs[k - 1]) / 2
                  for k in range(1, len(points)))
    return Result(seconds, 2 * n, command, estimated=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--full", action="store_true",
                        help="run every per-instance apply for real instead of estimating")
    parser.add_argument("--samples", type=int, default=5,
                        help="applies measured at each sample point of the estimate")
    parser.add_argument("--legacy", action="store_true",
                        help="use the iptables-legacy-* commands instead of the default ones")
    args = parser.parse_args(argv)
    global TOOLS
    TOOLS = LEGACY if args.legacy else None
    if os.geteuid() != 0:
        print("bench_iptables: needs root (private network namespace)", file=sys.stderr)
        return 2
    version = subprocess.run(["iptables-legacy" if args.legacy else "iptables", "-V"],
                             capture_output=True, text=True).stdout.strip()
    print(f"iptables: {version}; each instance: 1 VIF, IPv4 + IPv6, 3 rules")
    header = (f"{'instances':>9}  {'mode':<13} {'restores':>8}  {'total s':>9}  "
              f"{'in commands s':>13}  note")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        deferred, again = run_deferred(n)
        per = (run_per_instance_full(n) if args.full
               else run_per_instance_estimate(n, max(1, min(args.samples, n // 4))))
        rows = [("deferred", deferred, ""), ("restart", again, "tables already up to date"),
                ("per-instance", per, "estimated from samples" if per.estimated else "")]
        for mode, result, note in rows:
            print(f"{n:>9}  {mode:<13} {result.restores:>8}  {result.seconds:>9.2f}  "
                  f"{result.command_seconds:>13.2f}  {note}")
        print(f"{'':>9}  per-instance / deferred: {per.seconds / deferred.seconds:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
