"""Heartbeat gaps while a big start-up runs, and the agent's memory afterwards.

Starts the real agent process (`python -m agent`, fakevirt) on a host with N instances: the
hypervisor's guests come from a generated scenario file, the database records are seeded into a
fresh SQLite file. While the agent registers, runs init_host on every instance and audits, a
second connection reads `last_seen_up` every 20 ms; the gaps between consecutive beats (stamped
with the database clock) show whether the start-up work ever delays the heartbeat. The goal is a
longest gap of at most report_interval + 1 s.

    .venv/bin/python bench/bench_busy_start.py [--instances 100 1000 10000] [--report-interval 1]

Prints one table row per size: time to the end of start-up, beats during start-up, the longest
gap, resident memory after start-up settles. Never asserts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil
from sqlalchemy import select

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from agent.db.engine import make_database  # noqa: E402
from agent.db.migrate import upgrade  # noqa: E402
from agent.db.models import Service  # noqa: E402
from fakevirt.scenario import POWER_STATE_WORDS, generate_scenario  # noqa: E402
from fakevirt.seed import seed_database  # noqa: E402

HOST = "bench-host"
POWER_WORDS = {int(state): word for word, state in POWER_STATE_WORDS.items()}


def write_scenario_file(scenario, path: str) -> None:
    """The hypervisor side of a generated scenario (host and domains) as a scenario file."""
    host = scenario.host
    lines = ["[host]", f'hostname = "{host.hostname}"', f"vcpus = {host.vcpus}",
             f"memory_mb = {host.memory_mb}", f"local_gb = {host.local_gb}",
             f'cpu_arch = "{host.cpu_arch}"', ""]
    for dom in scenario.domains:
        lines += ["[[domains]]", f'uuid = "{dom.uuid}"', f'name = "{dom.name}"',
                  f'power_state = "{POWER_WORDS[int(dom.power_state)]}"',
                  f"vcpus = {dom.vcpus}", f"memory_mb = {dom.memory_mb}",
                  f"disk_gb = {dom.disk_gb}", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def run_one(n: int, report_interval: int, workdir: str) -> dict:
    state = os.path.join(workdir, f"state-{n}")
    os.makedirs(state)
    url = f"sqlite:///{state}/agent.sqlite"
    scenario = generate_scenario(n, hostname=HOST)
    scenario_path = os.path.join(workdir, f"scenario-{n}.toml")
    write_scenario_file(scenario, scenario_path)
    db = make_database(url)
    upgrade(db)
    seed_database(db, scenario)
    conf_path = os.path.join(workdir, f"agent-{n}.conf")
    with open(conf_path, "w") as fh:
        fh.write(f"[DEFAULT]\nhost = {HOST}\nstate_path = {state}\n"
                 f"report_interval = {report_interval}\nservice_down_time = "
                 f"{report_interval * 10}\nperiodic_fuzzy_delay = 0\n"
                 f"[fakevirt]\nscenario = {scenario_path}\n")
    log_path = os.path.join(workdir, f"agent-{n}.log")
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", conf_path,
                                 "--driver", "fake"], stdout=log, stderr=log, cwd=ROOT)
    beats: list[dt.datetime] = []
    startup_done = None
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            with db.engine.connect() as conn:
                row = conn.execute(select(Service.last_seen_up, Service.disabled_reason)
                                   .where(Service.host == HOST)).first()
            if row is not None and row.last_seen_up is not None and (
                    not beats or row.last_seen_up != beats[-1]):
                beats.append(row.last_seen_up)
            if row is not None and startup_done is None and beats and \
                    row.disabled_reason is None:
                startup_done = time.time()
            if startup_done is not None and time.time() - startup_done > 3 * report_interval:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited with {proc.returncode}; see {log_path}")
            time.sleep(0.02)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        db.dispose()
    gaps = [(b - a).total_seconds() for a, b in zip(beats, beats[1:])]
    return {"instances": n, "startup_s": (startup_done or time.time()) - started,
            "beats": len(beats), "max_gap_s": max(gaps) if gaps else float("nan"),
            "rss_mib": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--report-interval", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.instances:
            print(f"running with {n} instances ...", file=sys.stderr)
            rows.append(run_one(n, args.report_interval, workdir))
    print(f"report_interval = {args.report_interval} s (goal: longest gap <= "
          f"{args.report_interval + 1} s)")
    print(f"{'instances':>9} | {'start-up s':>10} | {'beats':>5} | {'longest gap s':>13} | "
          f"{'RSS MiB':>7}")
    for r in rows:
        print(f"{r['instances']:>9} | {r['startup_s']:>10.2f} | {r['beats']:>5} | "
              f"{r['max_gap_s']:>13.3f} | {r['rss_mib']:>7.1f}")


if __name__ == "__main__":
    main()
