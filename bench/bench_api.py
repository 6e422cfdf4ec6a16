"""Compute API benchmark: GET /os-services and GET /os-hypervisors/detail with N services (each
with one compute node), and the walk of every page of the hypervisor detail. Prints a table;
asserts nothing.

    .venv/bin/python bench/bench_api.py [--sizes 100,1000,10000] [--requests 30] [--walks 5]
                                        [--db URL]

At 2.53 the hypervisor detail answers nova's first page, [api] max_limit (1,000) entries; the
"all pages" row follows the `hypervisors_links` next links to the end, as openstacksdk and
openstackclient do: its statements are the sum over the pages, its CPU, p50 and p99 those of
the whole walk, and its rate walks per second.

For each size: the SQL statements per request (counted on the engine, in-process through the
WSGI application), the median CPU time of the application per request in-process (five
requests after one warm-up: the figure that a loaded machine disturbs least), and, over HTTP
against a real `agent api` process (waitress, 127.0.0.1), the p50/p99 latency and requests per
second of sequential requests, and the API process's RSS idle (after start, before any
request) and after the requests. The default database is a fresh SQLite file per size; --db
uses a server database (e.g. PostgreSQL) whose services and compute_nodes tables are emptied
first (and, on PostgreSQL, vacuumed after the seeding). The load average is printed with each
size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from sqlalchemy import delete, insert, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.api.app import ApiApp  # noqa: E402
from agent.db import migrate  # noqa: E402
from agent.db.engine import make_database  # noqa: E402
from agent.db.models import ComputeNode, Service  # noqa: E402
from agent.vocabulary import COMPUTE_BINARY, COMPUTE_TOPIC  # noqa: E402
from tests.functional.statement_counter import count_statements  # noqa: E402

PATHS = ("/v2.1/os-services", "/v2.1/os-hypervisors/detail")
WALK = "/v2.1/os-hypervisors/detail"
HEADERS = {"OpenStack-API-Version": "compute 2.53", "X-Auth-Token": "x"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def seed(db, n: int) -> None:
    now = dt.datetime.utcnow()
    with db.sessions.begin() as session:
        session.execute(delete(ComputeNode))
        session.execute(delete(Service))
        session.execute(insert(Service), [
            {"uuid": str(uuid.uuid4()), "host": f"cn{i:05d}", "binary": COMPUTE_BINARY,
             "topic": COMPUTE_TOPIC, "report_count": 1, "last_seen_up": now,
             "last_seen_host_time": now, "created_at": now, "updated_at": now}
            for i in range(n)])
        session.execute(insert(ComputeNode), [
            {"uuid": str(uuid.uuid4()), "host": f"cn{i:05d}", "hypervisor_hostname":
             f"cn{i:05d}", "vcpus": 32, "memory_mb": 131072, "local_gb": 1000,
             "free_ram_mb": 131072, "free_disk_gb": 1000, "running_vms": 0,
             "hypervisor_type": "QEMU", "hypervisor_version": 7002022,
             "cpu_info": '{"arch": "x86_64"}', "host_ip": "192.0.2.1"} for i in range(n)])
    if db.engine.dialect.name == "postgresql":
        # The rows deleted above stay as dead tuples until a vacuum: without one, each run on
        # the same database reads a larger table than the last (a live one has autovacuum).
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (FULL, ANALYZE) services, compute_nodes"))


def walk(get, path: str) -> int:
    """Follow the next links from `path` to the end with `get(path) -> body`; the pages."""
    pages = 0
    while path:
        body = get(path)
        pages += 1
        links = body.get("hypervisors_links")
        path = urllib.parse.urlsplit(links[0]["href"]) if links else None
        if path:
            path = f"{path.path}?{path.query}"
    return pages


def in_process(db) -> dict[str, tuple[int, float]]:
    """Per path: (statements per request, median CPU seconds per request) in this process;
    for "walk": (statements of the whole walk, median CPU seconds of it, pages)."""
    from werkzeug.test import Client

    client = Client(ApiApp(db.sessions, service_down_time=60,
                           server_clock=db.engine.dialect.name != "sqlite"))

    def get(path: str) -> dict:
        response = client.get(path, headers=HEADERS)
        assert response.status_code == 200
        return json.loads(response.get_data())

    result = {}
    for path in PATHS:
        with count_statements(db.engine) as counter:
            get(path)
        cpu = []
        for _ in range(5):
            started = time.process_time()
            get(path)
            cpu.append(time.process_time() - started)
        result[path] = (counter.statements, percentile(cpu, 0.5))
    with count_statements(db.engine) as counter:
        pages = walk(get, WALK)
    cpu = []
    for _ in range(3):
        started = time.process_time()
        walk(get, WALK)
        cpu.append(time.process_time() - started)
    result["walk"] = (counter.statements, percentile(cpu, 0.5), pages)
    return result


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def over_http(url: str, workdir: str, requests: int, walks: int) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--db", url, "--state-path",
                             workdir, "api", "--bind", f"127.0.0.1:{port}"],
                            stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        result = {"rss_idle_kib": rss_kib(proc.pid)}
        for path in PATHS:
            times = []
            for i in range(requests + 2):
                request = urllib.request.Request(base + path, headers=HEADERS)
                started = time.perf_counter()
                urllib.request.urlopen(request, timeout=60).read()
                if i >= 2:  # warm-up
                    times.append(time.perf_counter() - started)
            result[path] = (percentile(times, 0.5), percentile(times, 0.99),
                            len(times) / sum(times))

        def get(path: str) -> dict:
            request = urllib.request.Request(base + path, headers=HEADERS)
            return json.loads(urllib.request.urlopen(request, timeout=60).read())

        times = []
        for i in range(walks + 1):
            started = time.perf_counter()
            walk(get, WALK)
            if i >= 1:  # warm-up
                times.append(time.perf_counter() - started)
        result["walk"] = (percentile(times, 0.5), percentile(times, 0.99),
                          len(times) / sum(times))
        result["rss_after_kib"] = rss_kib(proc.pid)
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--walks", type=int, default=5, help="walks of every page measured")
    parser.add_argument("--db", help="a server database URL (its tables are emptied)")
    args = parser.parse_args()
    print(f"{'services':>8} {'request':<28} {'stmts':>5} {'cpu ms':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'req/s':>7} {'RSS idle':>9} {'RSS after':>9}")
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as workdir:
            url = args.db or f"sqlite:///{workdir}/agent.sqlite"
            db = make_database(url)
            try:
                migrate.upgrade(db)
                seed(db, n)
                counts = in_process(db)
            finally:
                db.dispose()
            before = os.getloadavg()
            http = over_http(url, workdir, args.requests, args.walks)
            print(f"# {db.engine.dialect.name}, {n} services, load average "
                  f"{before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
            for path in PATHS:
                p50, p99, rate = http[path]
                stmts, cpu = counts[path]
                print(f"{n:>8} GET {path[5:]:<24} {stmts:>5} {cpu * 1000:>7.1f} "
                      f"{p50 * 1000:>8.1f} {p99 * 1000:>8.1f} {rate:>7.1f} "
                      f"{http['rss_idle_kib'] / 1024:>7.1f} M "
                      f"{http['rss_after_kib'] / 1024:>7.1f} M")
            p50, p99, rate = http["walk"]
            stmts, cpu, pages = counts["walk"]
            print(f"{n:>8} {'  all ' + str(pages) + ' pages of it':<28} {stmts:>5} "
                  f"{cpu * 1000:>7.1f} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} {rate:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
