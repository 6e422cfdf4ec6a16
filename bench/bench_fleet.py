"""Benchmark: N simulated compute agents in this one process against one database (the fleet of
`agent fleet`), on a throw-away database that is created for the run and dropped after it.

  .venv/bin/python bench/bench_fleet.py --count 1000 --duration 120 \
      --db postgresql+psycopg://postgres@127.0.0.1:5432/postgres

--db names a PostgreSQL server (any database on it: a new `agent_bench_fleet_<pid>` is created
next to it) or is omitted for a SQLite file in a temporary directory. Prints the fleet report,
the database server's CPU over the run (the local `postgres` processes, read with psutil) and,
with --profile, the functions where the agent process spent its time (py-spy, all threads).
Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from agent.commands.fleet import AGENT_LOGGERS  # noqa: E402
from agent.config import RawValue, load_config  # noqa: E402
from agent.db import migrate  # noqa: E402
from agent.db.engine import make_database  # noqa: E402
from agent.fleet.runner import FleetOptions, FleetRunner  # noqa: E402
from agent.log import setup_logging  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--instances-per-host", type=int, default=2)
    parser.add_argument("--duration", type=float, default=120.0,
                        help="seconds of the run, start-up ramp included (default 120)")
    parser.add_argument("--report-interval", type=int, default=10)
    parser.add_argument("--service-down-time", type=int, default=60)
    parser.add_argument("--update-resources-interval", type=int, default=60)
    parser.add_argument("--periodic-fuzzy-delay", type=int, default=60)
    parser.add_argument("--ramp", type=float, default=None)
    parser.add_argument("--beat-workers", type=int, default=8)
    parser.add_argument("--job-workers", type=int, default=2)
    parser.add_argument("--start-workers", type=int, default=2)
    parser.add_argument("--switch-interval", type=float, metavar="S",
                        help="sys.setswitchinterval for the run (Python's default: 0.005)")
    parser.add_argument("--db", metavar="URL",
                        help="a PostgreSQL server URL (a throw-away database is created on it)")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample all threads with py-spy during the steady part and write "
                             "the collapsed stacks here; the top functions are printed")
    parser.add_argument("--report", metavar="FILE", help="write the results as JSON")
    return parser.parse_args(argv)


class ThrowAwayPostgres:
    def __init__(self, server_url: str):
        url = make_url(server_url)
        self.admin = make_database(url.render_as_string(hide_password=False))
        self.name = f"agent_bench_fleet_{os.getpid()}"
        self.url = url.set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> str:
        with self.admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f'CREATE DATABASE "{self.name}"'))
        db = make_database(self.url)
        migrate.upgrade(db)
        db.dispose()
        return self.url

    def drop(self) -> None:
        with self.admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def postgres_cpu_seconds() -> float | None:
    """CPU seconds used so far by the local PostgreSQL server's processes (None if none)."""
    import psutil

    total, found = 0.0, False
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            # Backends that exited are reaped by the postmaster: their CPU is in its children_*.
            total += times.user + times.system + times.children_user + times.children_system
            found = True
    return total if found else None


PROFILE_RATE = 50  # samples per second


def profile_seconds(duration: float) -> float:
    return max(1.0, duration / 2 - 2)


def start_profiler(path: str, delay: float, seconds: float) -> threading.Thread | None:
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        print("py-spy not found: pip install py-spy (no profile taken)", file=sys.stderr)
        return None

    def record() -> None:
        time.sleep(delay)
        # --gil: only samples of the thread holding the GIL, i.e. where the CPU goes.
        subprocess.run([py_spy, "record", "--gil", "--pid", str(os.getpid()), "--duration",
                        str(int(seconds)), "--rate", str(PROFILE_RATE), "--format", "raw",
                        "--output", path, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


def collapsed_stacks(path: str):
    """(stack, samples) of each line py-spy wrote. Lines are split at '\n' only: a frame name
    read from a running process can hold a stray '\r' or undecodable bytes."""
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                yield stack, int(count)


def top_functions(path: str, n: int = 15) -> list[tuple[str, float, float]]:
    """(function, self %, total %) of the collapsed stacks py-spy wrote; idle waits left out."""
    idle = ("wait (threading.py", "_worker (concurrent/futures", "select (", "sleep",
            "_wait_for_tstate_lock")
    own, inclusive = collections.Counter(), collections.Counter()
    total = 0
    for stack, samples in collapsed_stacks(path):
        frames = stack.split(";")
        if any(frames[-1].startswith(word) or word in frames[-1] for word in idle):
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return []
    return [(name, 100.0 * samples / total, 100.0 * inclusive[name] / total)
            for name, samples in own.most_common(n)]


# Where the GIL time goes, by the part of the fleet whose frame is on the stack.
COMPONENTS = (("heartbeats", "Heartbeat.beat"),
              ("resource audits", "ResourceTracker.update_available_resource"),
              ("power-state syncs", "PowerStateSync.sync_power_states"),
              ("agent start-ups", "FleetRunner._start_agent"),
              ("beat/job timers", "DueScheduler._run_timer"),
              ("services poller", "ServicesPoller.poll"))


def components(path: str, rate: int, seconds: float) -> tuple[float, list[tuple[str, float]]]:
    """(share of the wall time the GIL was held, [(component, share of those samples)])."""
    counts, total = collections.Counter(), 0
    for stack, samples in collapsed_stacks(path):
        total += samples
        name = next((label for label, frame in COMPONENTS if frame in stack), "other")
        counts[name] += samples
    if not total:
        return 0.0, []
    share = total / (rate * seconds) if seconds > 0 else 0.0
    return share, [(label, 100.0 * counts[label] / total)
                   for label in [c[0] for c in COMPONENTS] + ["other"]]


def print_profile(path: str, seconds: float, out: dict) -> None:
    held, parts = components(path, PROFILE_RATE, seconds)
    top = top_functions(path)
    out["profile_gil_held_percent"] = round(100 * held, 1)
    out["profile_components"] = {label: round(p, 1) for label, p in parts}
    out["profile_top"] = [{"function": f, "self_percent": round(s, 1),
                           "total_percent": round(t, 1)} for f, s, t in top]
    print(f"\nprofile (py-spy --gil, {seconds:.0f} s of the steady part): the GIL was held "
          f"{100 * held:.0f} % of the time; by component:")
    for label, pct in parts:
        print(f"  {pct:5.1f} %  {label}")
    print("top functions (self %, total %):")
    for name, own, total in top:
        print(f"  {own:5.1f}  {total:5.1f}  {name}")


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    for name in (*AGENT_LOGGERS, "agent.db.migrate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    state = tempfile.mkdtemp(prefix="bench-fleet-")
    pg = ThrowAwayPostgres(args.db) if args.db else None
    url = pg.__enter__() if pg else f"sqlite:///{state}/fleet.sqlite"
    try:
        raw = {("DEFAULT", "report_interval"): args.report_interval,
               ("DEFAULT", "service_down_time"): args.service_down_time,
               ("DEFAULT", "update_resources_interval"): args.update_resources_interval,
               ("DEFAULT", "periodic_fuzzy_delay"): args.periodic_fuzzy_delay,
               ("DEFAULT", "state_path"): state, ("database", "connection"): url}
        conf = load_config(None, {k: RawValue(str(v), "bench") for k, v in raw.items()})
        options = FleetOptions(count=args.count, instances_per_host=args.instances_per_host,
                               duration=args.duration, ramp=args.ramp,
                               beat_workers=args.beat_workers, job_workers=args.job_workers,
                               start_workers=args.start_workers, progress_interval=10.0)
        runner = FleetRunner(conf, options)
        profile = None
        if args.profile:
            # The steady part: from half the run to its end (the ramp is usually over).
            profile = start_profiler(args.profile, args.duration / 2,
                                     profile_seconds(args.duration))
        db_cpu0, wall0 = postgres_cpu_seconds() if pg else None, time.monotonic()
        report = runner.run()
        db_cpu1, wall1 = postgres_cpu_seconds() if pg else None, time.monotonic()
        if profile is not None:
            profile.join()
    finally:
        if pg is not None and not args.keep:
            pg.drop()
        shutil.rmtree(state, ignore_errors=True)
    out = report.as_dict()
    if db_cpu0 is not None and db_cpu1 is not None:
        out["db_server_cpu_percent_of_one_core"] = round(100 * (db_cpu1 - db_cpu0)
                                                         / (wall1 - wall0), 1)
    out["load_average_at_end"] = os.getloadavg()
    out["switch_interval_s"] = sys.getswitchinterval()
    out["beat_workers"], out["start_workers"] = args.beat_workers, args.start_workers
    print()
    print(report.format_table(), end="")
    if "db_server_cpu_percent_of_one_core" in out:
        print(f"{'database cpu':<15}  {out['db_server_cpu_percent_of_one_core']:.0f} % of one "
              "core (local postgres processes, whole run)")
    print(f"{'load average':<15}  {' '.join(f'{x:.2f}' for x in out['load_average_at_end'])}")
    if args.profile and os.path.exists(args.profile):
        print_profile(args.profile, profile_seconds(args.duration), out)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
