"""Start-up benchmark: process start to first heartbeat row and to READY=1, idle memory.

Starts the real agent (`python -m agent`) several times, each on a fresh state directory and
SQLite database (or the --db URL, emptied of this host's row first), with NOTIFY_SOCKET pointing
at a socket this script reads. Prints a table; asserts nothing.

    .venv/bin/python bench/bench_startup.py [--runs 5] [--driver fake] [--db URL]

- first beat: the first beat's `last_seen_up` (database clock; on this machine the same clock as
  the script's) minus the wall time just before the process was spawned.
- READY: arrival of READY=1 on the notify socket, same origin.
- idle RSS: resident memory of the agent process SETTLE seconds after READY.
- stop: SIGTERM to exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from sqlalchemy import delete, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.db.engine import make_database  # noqa: E402
from agent.db.models import Service  # noqa: E402

HOST = "bench-startup"
SETTLE = 3.0
DEADLINE = 120.0


def one_run(workdir: Path, driver: str, db_url: str | None) -> dict[str, float]:
    state = workdir / "state"
    url = db_url or f"sqlite:///{state}/agent.sqlite"
    if db_url:
        db = make_database(db_url)
        with db.engine.begin() as conn:
            conn.execute(delete(Service).where(Service.host == HOST))
        db.dispose()
    config = workdir / "agent.conf"
    # report_interval 10 (the default): the row still shows the first beat when READY arrives.
    config.write_text(f"[DEFAULT]\nhost = {HOST}\nstate_path = {state}\ncompute_driver = {driver}\n"
                      f"periodic_fuzzy_delay = 0\n\n[database]\nconnection = {url}\n")
    sock_path = workdir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(DEADLINE)
    ready_at: list[float] = []

    def listen() -> None:
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                return
            if b"READY=1" in data.split(b"\n"):
                ready_at.append(time.time())
                return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), PYTHONPATH=str(REPO))
    env.pop("WATCHDOG_USEC", None)
    with open(workdir / "agent.log", "wb") as log:
        started = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=str(REPO))
        try:
            listener.join(DEADLINE)
            if not ready_at:
                raise RuntimeError(f"no READY=1 within {DEADLINE} s; see {workdir}/agent.log")
            db = make_database(url)
            with db.sessions() as session:
                row = session.scalars(select(Service).where(Service.host == HOST,
                                                            Service.deleted == 0)).one()
            db.dispose()
            if row.report_count != 1:
                raise RuntimeError(f"report_count {row.report_count} at READY: the first beat's "
                                   "time is gone")
            first_beat = row.last_seen_up.replace(tzinfo=dt.timezone.utc).timestamp()
            time.sleep(SETTLE)
            rss = psutil.Process(proc.pid).memory_info().rss
            stop_from = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(DEADLINE)
            stopped = time.monotonic() - stop_from
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()
    return {"first beat (s)": first_beat - started, "READY=1 (s)": ready_at[0] - started,
            "idle RSS (MiB)": rss / 2**20, "SIGTERM to exit (s)": stopped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--driver", choices=("fake", "libvirt"), default="fake")
    parser.add_argument("--db", metavar="URL", help="server database (schema already synced); "
                        "default: a fresh SQLite file per run")
    args = parser.parse_args()
    results: list[dict[str, float]] = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
            results.append(one_run(Path(tmp), args.driver, args.db))
        print(f"run {number + 1}/{args.runs} done", file=sys.stderr)
    backend = (args.db.split(":", 1)[0] if args.db else "sqlite (fresh file, schema created "
               "at start)")
    print(f"agent start-up, {args.runs} runs, driver {args.driver}, database {backend}, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'metric':<22}{'median':>10}{'min':>10}{'max':>10}")
    for metric in results[0]:
        values = [r[metric] for r in results]
        print(f"{metric:<22}{statistics.median(values):>10.3f}{min(values):>10.3f}"
              f"{max(values):>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
