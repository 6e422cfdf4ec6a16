"""nova 34's own compute API beside ours: GET /os-services and GET /os-hypervisors/detail with N
services (each with one compute node) seeded with SQL into nova's own PostgreSQL databases.
Prints a table in bench_api.py's columns; asserts nothing.

    .venv/bin/python bench/bench_nova_api.py [--sizes 100,10000] [--requests 10]
        [--nova-venv DIR] [--server postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

What it does, in a scratch directory: creates the databases <prefix>_api, <prefix>_cell0 and
<prefix>_cell1 (dropped first) on the server; writes a nova.conf (those databases, a rabbit
transport_url that is never used on these paths, notifications off, max_limit above N so that
os-hypervisors answers in one page as ours does) and a paste file whose
pipeline is nova's own minus keystonemiddleware's auth_token (nova 34 has no noauth2 any more:
the requests carry the identity headers auth_token would set, X-User-Id, X-Project-Id and
X-Roles: admin); runs `nova-manage api_db sync`, `cell_v2 map_cell0`, `cell_v2 create_cell
--name cell1` and `db sync`; per size, seeds the services, compute_nodes and host_mappings rows
with SQL and serves nova's WSGI application (nova.wsgi.osapi_compute) with the standard
library's wsgiref server in the nova virtual environment's Python; times sequential requests
after two warm-ups, counts the SQL statements of one request (an SQLAlchemy event in the
served process) and the entries of its answer. nova's environment gets a PostgreSQL driver
(psycopg) installed with pip --target into the scratch directory when it has none; the
environment itself is not changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

from sqlalchemy import MetaData, Table, create_engine, insert, select, text
from sqlalchemy.engine import make_url

PATHS = ("/v2.1/os-services", "/v2.1/os-hypervisors/detail")
HEADERS = {"OpenStack-API-Version": "compute 2.53", "X-User-Id": "bench",
           "X-Project-Id": "bench", "X-Roles": "admin,member,reader"}
TRANSPORT = "rabbit://guest:guest@127.0.0.1:5672/"

PASTE = """\
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2.1: oscomputeversion_v2
/v2.1/+: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = cors http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit
    keystonecontext osapi_compute_app_v21

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory
[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory
[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory
[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory
[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = nova
[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory
[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory
[pipeline:oscomputeversions]
pipeline = cors faultwrap request_log http_proxy_to_wsgi oscomputeversionapp
[pipeline:oscomputeversion_v2]
pipeline = cors compute_req_id faultwrap request_log http_proxy_to_wsgi oscomputeversionapp_v2
[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory
[app:oscomputeversionapp_v2]
paste.app_factory = nova.api.openstack.compute.versions:VersionsV2.factory
"""

# Run by nova's Python: nova's WSGI application behind wsgiref, each response carrying the
# number of SQL statements its request ran (counted on every SQLAlchemy engine of the process).
SERVE = """\
import os, sys, threading
from wsgiref.simple_server import WSGIRequestHandler, make_server
sys.argv = ["nova-api-bench"]
from sqlalchemy import event
from sqlalchemy.engine import Engine
# nova is run with psycopg2 upstream, which gives inet columns as text; psycopg 3 gives
# ipaddress objects, which nova's netaddr fields refuse: load them as text, as psycopg2 does.
import psycopg
from psycopg.types.string import TextLoader
psycopg.adapters.register_loader("inet", TextLoader)
count = [0]
lock = threading.Lock()
def counted(*_args):
    with lock:
        count[0] += 1
event.listen(Engine, "before_cursor_execute", counted)
from nova.wsgi.osapi_compute import application
def app(environ, start_response):
    count[0] = 0
    body = b"".join(application(environ, lambda s, h, e=None: start.append((s, h))))
    status, headers = start[-1]
    start_response(status, headers + [("X-Bench-Statements", str(count[0]))])
    return [body]
start = []
class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass
server = make_server("127.0.0.1", int(sys.argv_port), app, handler_class=Quiet)
server.serve_forever()
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd: list[str], env: dict) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")


def nova_env(venv: Path, work: Path) -> dict:
    """The environment for nova's processes: its config files (nova's WSGI entry point loads the
    paste pipeline from the first one) and, when nova's Python has
    no PostgreSQL driver, one installed with pip --target under `work`."""
    env = dict(os.environ, OS_NOVA_CONFIG_DIR=str(work),
               OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf")
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import psycopg"], capture_output=True, check=False)
    if probe.returncode:
        run([python, "-m", "pip", "install", "--quiet", "--target", str(work / "site"),
             "psycopg[binary]>=3.3,<4"], env)
        env["PYTHONPATH"] = str(work / "site")
    return env


def create_databases(server: str, prefix: str) -> dict[str, str]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    urls = {}
    with admin.connect() as conn:
        for name in ("api", "cell0", "cell1"):
            database = f"{prefix}_{name}"
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
            urls[name] = make_url(server).set(database=database).render_as_string(
                hide_password=False)
    admin.dispose()
    return urls


def write_config(work: Path, urls: dict[str, str]) -> None:
    (work / "api-paste.ini").write_text(PASTE)
    (work / "nova.conf").write_text(textwrap.dedent(f"""\
        [DEFAULT]
        host = nova-bench-api
        state_path = {work}
        transport_url = {TRANSPORT}
        [api]
        # one page holds every hypervisor (nova pages os-hypervisors at max_limit, 1000 by
        # default, from 2.33), so that both APIs answer with the same N entries
        max_limit = 1000000
        [api_database]
        connection = {urls['api']}
        [database]
        connection = {urls['cell1']}
        [oslo_messaging_notifications]
        driver = noop
        [oslo_policy]
        enforce_scope = false
        enforce_new_defaults = false
        """))


def prepare(venv: Path, work: Path, env: dict, urls: dict[str, str]) -> None:
    manage = [str(venv / "bin" / "nova-manage"), "--config-file", str(work / "nova.conf")]
    run(manage + ["api_db", "sync"], env)
    run(manage + ["cell_v2", "map_cell0", "--database_connection", urls["cell0"]], env)
    run(manage + ["cell_v2", "create_cell", "--name", "cell1", "--database_connection",
                  urls["cell1"], "--transport-url", TRANSPORT], env)
    run(manage + ["db", "sync"], env)


def seed(urls: dict[str, str], n: int, service_version: int) -> None:
    """N nova-compute services, one compute node each, and their host mappings to cell1."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    cell = create_engine(urls["cell1"])
    api = create_engine(urls["api"])
    meta = MetaData()
    services, nodes = (Table(t, meta, autoload_with=cell) for t in ("services", "compute_nodes"))
    mappings, cells = (Table(t, meta, autoload_with=api)
                       for t in ("host_mappings", "cell_mappings"))
    hosts = [f"cn{i:05d}" for i in range(n)]
    with cell.begin() as conn:
        conn.execute(nodes.delete())
        conn.execute(services.delete().where(services.c.binary == "nova-compute"))
        ids = conn.execute(insert(services).returning(services.c.id), [
            {"uuid": str(uuid.uuid4()), "host": h, "binary": "nova-compute",
             "topic": "compute", "report_count": 1, "disabled": False, "forced_down": False,
             "last_seen_up": now, "version": service_version, "deleted": 0,
             "created_at": now, "updated_at": now} for h in hosts]).scalars().all()
        conn.execute(insert(nodes), [
            {"uuid": str(uuid.uuid4()), "service_id": sid, "host": h,
             "hypervisor_hostname": h, "vcpus": 32, "memory_mb": 131072, "local_gb": 1000,
             "vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": 0, "free_ram_mb": 131072,
             "free_disk_gb": 1000, "current_workload": 0, "running_vms": 0,
             "disk_available_least": 1000, "hypervisor_type": "QEMU",
             "hypervisor_version": 7002022, "cpu_info": json.dumps({"arch": "x86_64"}),
             "host_ip": "192.0.2.1", "stats": "{}", "cpu_allocation_ratio": 16.0,
             "ram_allocation_ratio": 1.5, "disk_allocation_ratio": 1.0, "mapped": 1,
             "deleted": 0, "created_at": now, "updated_at": now}
            for sid, h in zip(ids, hosts)])
    with api.begin() as conn:
        cell1 = conn.execute(select(cells.c.id).where(cells.c.name == "cell1")).scalar_one()
        conn.execute(mappings.delete())
        conn.execute(insert(mappings), [{"cell_id": cell1, "host": h, "created_at": now}
                                        for h in hosts])
    cell.dispose()
    api.dispose()


def serve(venv: Path, work: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """nova's application on a free port, once it answers GET /."""
    port = free_port()
    script = work / "serve.py"
    script.write_text(SERVE.replace("int(sys.argv_port)", str(port)))
    with open(work / "api.log", "w") as log:
        proc = subprocess.Popen([str(venv / "bin" / "python"), str(script)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=5).read()
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise SystemExit("nova's API did not start:\n"
                                 + (work / "api.log").read_text()[-3000:]) from None
            time.sleep(0.2)


def measure(base: str, requests: int) -> dict:
    """Per path: (statements of the last request, entries in the last answer, p50 s, p99 s,
    requests per second). nova answers a cell that did not reply within its 60 s scatter-gather
    timeout as an empty list: the entries column shows it."""
    result = {}
    for path in PATHS:
        times, statements, entries = [], None, None
        for i in range(requests + 2):
            request = urllib.request.Request(base + path, headers=HEADERS)
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=600) as response:
                body = response.read()
                statements = response.headers.get("X-Bench-Statements")
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - started)
            entries = len(next(iter(json.loads(body).values())))
        result[path] = (statements, entries, percentile(times, 0.5), percentile(times, 0.99),
                        len(times) / sum(times))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--nova-venv", type=Path,
                        default=Path(os.environ.get("AGENT_TEST_NOVA_VENV", ".venv-nova")))
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/"
                                            "postgres",
                        help="a PostgreSQL URL whose user may create databases")
    parser.add_argument("--prefix", default="nova_bench", help="database name prefix")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    venv = args.nova_venv.resolve()
    if not (venv / "bin" / "nova-manage").exists():
        raise SystemExit(f"{venv}: no nova-manage there; give nova's virtual environment with "
                         "--nova-venv or AGENT_TEST_NOVA_VENV")
    work = Path(tempfile.mkdtemp(prefix="nova-bench-"))
    try:
        env = nova_env(venv, work)
        urls = create_databases(args.server, args.prefix)
        write_config(work, urls)
        prepare(venv, work, env, urls)
        version = int(subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "from nova.objects.service import SERVICE_VERSION; print(SERVICE_VERSION)"],
            env=env, capture_output=True, text=True, check=True).stdout)
        print(f"{'services':>8} {'request':<28} {'stmts':>5} {'entries':>7} {'p50 ms':>9} "
              f"{'p99 ms':>9} {'req/s':>7}")
        for n in [int(s) for s in args.sizes.split(",")]:
            seed(urls, n, version)
            before = os.getloadavg()[0]
            proc, base = serve(venv, work, env)
            try:
                figures = measure(base, args.requests)
            finally:
                proc.terminate()
                proc.wait(30)
            print(f"# nova 34 on postgresql, {n} services, load average {before:.1f} before, "
                  f"{os.getloadavg()[0]:.1f} after")
            for path in PATHS:
                stmts, entries, p50, p99, rate = figures[path]
                print(f"{n:>8} GET {path[5:]:<24} {stmts:>5} {entries:>7} {p50 * 1000:>9.1f} "
                      f"{p99 * 1000:>9.1f} {rate:>7.2f}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
