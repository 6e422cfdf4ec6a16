"""Benchmark: ComputeManager.init_host and update_available_resource on fakevirt with SQLite.

For each size: a generated host with that many guests and instance rows in a fixed mix of
start-up cases (1 in 10 evacuated, 1 in 10 with an abandoned snapshot task, 1 in 10 half
deleted, 1 in 10 interrupted while powering off, the rest plain), seeded into a fresh SQLite
file. Prints wall times and SQL statement counts (an executemany counts once) of init_host, the
first (start-up) audit and a later unchanged audit. Goals at 10,000: init_host under 2 s, an
audit under 0.5 s, statement counts the same at every size. Nothing is asserted.

    .venv/bin/python -m bench.bench_init_host [SIZE ...]      (default: 100 1000 10000)
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from agent.config import load_config
from agent.db import migrate
from agent.db.engine import make_database
from tests.functional.statement_counter import count_statements, mixed_scenario, seeded_host


def run(size: int, workdir: Path) -> dict:
    host_name = f"bench-{size}"
    url = f"sqlite:///{workdir}/{host_name}.sqlite"
    db = make_database(url)
    migrate.upgrade(db)
    conf = load_config(None, {("DEFAULT", "host"): host_name,
                              ("DEFAULT", "state_path"): str(workdir / host_name),
                              ("database", "connection"): url})
    host = seeded_host(conf, db, mixed_scenario(size, host_name))
    try:
        with count_statements(db.engine) as init_count:
            start = time.perf_counter()
            result = host.manager.init_host()
            init_s = time.perf_counter() - start
        with count_statements(db.engine) as first_count:
            start = time.perf_counter()
            host.tracker.update_available_resource(startup=True)
            first_s = time.perf_counter() - start
        with count_statements(db.engine) as audit_count:
            start = time.perf_counter()
            host.tracker.update_available_resource()
            audit_s = time.perf_counter() - start
    finally:
        host.stop()
        db.dispose()
    return {"size": size, "instances": len(result.instances) + len(result.evacuated),
            "init_s": init_s, "init_stmts": init_count.statements,
            "init_rows": init_count.rows, "first_s": first_s,
            "first_stmts": first_count.statements, "audit_s": audit_s,
            "audit_stmts": audit_count.statements}


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [100, 1000, 10000]
    logging.basicConfig(level=logging.ERROR)
    header = ("instances", "init_host s", "stmts", "rows written", "first audit s", "stmts",
              "audit s", "stmts")
    print("  ".join(f"{h:>13}" for h in header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            r = run(size, Path(tmp))
            print("  ".join(f"{v:>13}" for v in (
                r["instances"], f"{r['init_s']:.3f}", r["init_stmts"], r["init_rows"],
                f"{r['first_s']:.3f}", r["first_stmts"], f"{r['audit_s']:.3f}",
                r["audit_stmts"])))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
