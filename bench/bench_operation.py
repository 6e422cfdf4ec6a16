"""One compute RPC operation in-process, without the broker: where its time goes.

A fresh SQLite file (WAL, as the agent opens it) with one running instance on fakevirt and no
firewall; the API's part done as `agent server stop|start` does it (task_state saved, action
recorded with the request id) outside the timing; then `InstanceOperations.stop_instance` or
`start_instance` (alternately) timed from the call to its return (the outcome and the event
saved). Prints p50/p99 of an operation, the SQL statements (an executemany counts once) and
write transactions (commits) per operation, and with `--profile N` the N most expensive
functions of a cProfile run (cumulative time). Nothing is asserted.

    .venv/bin/python -m bench.bench_operation [--samples 500] [--profile 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, update

from agent import vocabulary as s
from agent.compute.operations import InstanceOperations
from agent.config import load_config
from agent.context import RequestContext
from agent.db import action_queries as actions
from agent.db import migrate
from agent.db.engine import make_database
from agent.db.models import Instance
from agent.network.firewall import NoopFirewall
from fakevirt.driver import FakeDriver
from fakevirt.scenario import DomainSpec, HostSpec, InstanceSeed, Scenario
from fakevirt.seed import seed_database
from tests.functional.statement_counter import count_statements

HOST = "bench-op"
U = "77777777-7777-4777-8777-777777777777"
STEPS = (("stop_instance", s.POWERING_OFF, "stop"), ("start_instance", s.POWERING_ON, "start"))


def one_instance_host(workdir: Path):
    """A migrated SQLite database in `workdir` with host HOST's one active instance U, and
    the fakevirt driver with its running guest, started: (db, driver)."""
    url = f"sqlite:///{workdir}/agent.sqlite"
    db = make_database(url)
    migrate.upgrade(db)
    conf = load_config(None, {("DEFAULT", "host"): HOST,
                              ("DEFAULT", "state_path"): str(workdir / "state"),
                              ("database", "connection"): url})
    scenario = Scenario(HostSpec(hostname=HOST, vcpus=16, memory_mb=32768, local_gb=500,
                                 cpu_arch="x86_64"), (DomainSpec(U, "g0"),),
                        (InstanceSeed(U, host=HOST, node=HOST, vm_state=s.ACTIVE),), ())
    seed_database(db, scenario)
    driver = FakeDriver(conf, scenario=scenario)
    driver.init_host(HOST)
    return db, driver


def prepare(db, i: int) -> RequestContext:
    """What the control plane does before the cast: the task_state and the action."""
    method, task, action = STEPS[i % 2]
    ctx = RequestContext.new()
    with db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == U).values(task_state=task))
        actions.start_action(session, instance_uuid=U, action=action, request_id=ctx.request_id)
    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    db, driver = one_instance_host(Path(tempfile.mkdtemp(prefix="bench-op-")))
    ops = InstanceOperations(db, driver, NoopFirewall(), HOST)
    commits = [0]
    event.listen(db.engine, "commit", lambda _conn: commits.__setitem__(0, commits[0] + 1))
    for i in range(20):  # warm up: statement caches, imports
        getattr(ops, STEPS[i % 2][0])(prepare(db, i), {"uuid": U})
    times, statements, writes = [], [], []
    profiler = cProfile.Profile() if args.profile else None
    for i in range(args.samples):
        ctx = prepare(db, i)
        call = getattr(ops, STEPS[i % 2][0])
        commits[0] = 0
        with count_statements(db.engine) as counter:
            if profiler is not None:
                profiler.enable()
            start = time.perf_counter()
            call(ctx, {"uuid": U})
            times.append(time.perf_counter() - start)
            if profiler is not None:
                profiler.disable()
        statements.append(counter.statements)
        writes.append(commits[0])
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(f"operation in-process (stop/start alternately, SQLite WAL, {args.samples} samples):"
          f" p50 {statistics.median(times) * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms")
    print(f"statements per operation: {sorted(set(statements))}; "
          f"commits per operation: {sorted(set(writes))}")
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue())
    db.dispose()


if __name__ == "__main__":
    main()
