"""Heartbeat benchmark: latency of one Heartbeat.beat() (one UPDATE in its own transaction) on
SQLite, PostgreSQL and MariaDB. Prints a table; asserts nothing.

    .venv/bin/python bench/bench_heartbeat.py [--beats 500]

SQLite is a fresh file (WAL). PostgreSQL and MariaDB are used when AGENT_TEST_POSTGRESQL_URL and
AGENT_TEST_MYSQL_URL are set (`bash .ci/setup-databases` prints them); their schema is brought to
the current revision and this benchmark's service row is replaced.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.db import migrate  # noqa: E402
from agent.db.engine import make_database  # noqa: E402
from agent.db.models import Service  # noqa: E402
from agent.heartbeat import Heartbeat  # noqa: E402
from agent.registry import register_service  # noqa: E402

HOST = "bench-heartbeat"
WARMUP = 20


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(url: str, beats: int) -> list[float]:
    db = make_database(url)
    try:
        migrate.upgrade(db)
        with db.engine.begin() as conn:
            conn.execute(delete(Service).where(Service.host == HOST))
        service = register_service(db, HOST, starting=False)
        heartbeat = Heartbeat(db, service.id, 10)
        for _ in range(WARMUP):  # connection pool, statement cache
            heartbeat.beat()
        latencies = []
        failed = 0
        for _ in range(beats):
            start = time.perf_counter()
            ok = heartbeat.beat()
            latencies.append((time.perf_counter() - start) * 1000)
            failed += not ok
        if failed:
            raise RuntimeError(f"{failed} of {beats} beats failed on {db.url}")
        with db.engine.begin() as conn:
            conn.execute(delete(Service).where(Service.host == HOST))
        return latencies
    finally:
        db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=500)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        backends = [("sqlite (WAL file)", f"sqlite:///{tmp}/agent.sqlite"),
                    ("postgresql", os.environ.get("AGENT_TEST_POSTGRESQL_URL")),
                    ("mariadb", os.environ.get("AGENT_TEST_MYSQL_URL"))]
        for name, url in backends:
            if not url:
                rows.append((name, None))
                continue
            rows.append((name, measure(url, args.beats)))
    print(f"Heartbeat.beat() latency, {args.beats} beats after {WARMUP} warm-up beats, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs (milliseconds)")
    print(f"{'backend':<20}{'p50':>9}{'p99':>9}{'max':>9}{'mean':>9}")
    for name, values in rows:
        if values is None:
            print(f"{name:<20}  (skipped: URL not set)")
            continue
        print(f"{name:<20}{percentile(values, 0.5):>9.3f}{percentile(values, 0.99):>9.3f}"
              f"{max(values):>9.3f}{statistics.mean(values):>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
