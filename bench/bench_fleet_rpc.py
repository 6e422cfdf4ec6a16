"""Benchmark: `agent fleet` as a load test of the message broker. N simulated hosts consume
their own compute.<host> queues on the local RabbitMQ (a virtual host made for the run and
deleted after it); this process casts one operation to every instance (stop), waits until
every outcome is saved, then a second round (start), and prints the broker's memory,
connections, channels and consumers (rabbitmqctl, rabbitmq-diagnostics) before and after, the
fleet process's RSS, the time to drain each round and the outcomes counted (goal: none lost).

  .venv/bin/python bench/bench_fleet_rpc.py --count 1000 \
      --db postgresql+psycopg://postgres@127.0.0.1:5432/postgres

The fleet is the real command (`python -m agent fleet ... --transport-url ...`) in a process of
its own, with the default report_interval (10 s) and service_down_time (60 s); its own report
(heartbeat lateness over the whole run, false downs, requests run, messages left in the queues)
is printed at the end. --db names a PostgreSQL server (a throw-away database is created on it)
or is omitted for a SQLite file. A round does what `agent server stop|start` does for every
instance, in two steps so that the casts arrive as a burst: first the task_state saved and the
action recorded (one transaction per instance), then every cast, published from one thread as
fast as the broker takes them; the round has drained when every instance's outcome is saved
(read from the database every 0.25 s). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from agent.control.errors import InstanceInvalidState  # noqa: E402
from agent.control.servers import act, send  # noqa: E402
from agent.db.engine import make_database  # noqa: E402
from agent.db.models import Instance, InstanceAction, InstanceActionEvent  # noqa: E402
from agent.rpc.client import RpcClient  # noqa: E402
from agent.rpc.transport import parse  # noqa: E402
from bench.bench_fleet import ThrowAwayPostgres  # noqa: E402

ROUNDS = (("stop", "stopped"), ("start", "active"))
BROKER = "127.0.0.1:5672"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--instances-per-host", type=int, default=1)
    parser.add_argument("--rpc-connections", type=int, default=4)
    parser.add_argument("--rpc-workers", type=int, default=4)
    parser.add_argument("--ramp", type=float, default=None)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds the fleet idles, consuming, before the first round "
                             "(default 20)")
    parser.add_argument("--round-timeout", type=float, default=600.0)
    parser.add_argument("--rounds", type=int, choices=(0, 1, 2), default=2,
                        help="rounds of casts: 2 (stop, start), 1 (stop) or 0 (the broker "
                             "and the fleet idle, consuming)")
    parser.add_argument("--db", metavar="URL",
                        help="a PostgreSQL server URL (a throw-away database is created on it)")
    parser.add_argument("--report", metavar="FILE", help="write the results as JSON")
    return parser.parse_args(argv)


def ctl(*args: str, tool: str = "rabbitmqctl") -> str:
    """The output of a rabbitmqctl command; a busy broker that does not answer (exit 69, a
    time-out) is asked again, up to five times."""
    for attempt in range(5):
        done = subprocess.run([tool, "-q", *args], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode == 0:
            return done.stdout
        time.sleep(2 + 2 * attempt)
    raise SystemExit(f"{tool} {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")


def broker_process() -> psutil.Process | None:
    """The local RabbitMQ node (the Erlang VM started with `-s rabbit boot`)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "beam.smp" and "rabbit" in (proc.info["cmdline"] or []):
            return proc
    return None


def broker_figures(vhost: str) -> dict:
    """The broker node's memory (its process's RSS and CPU seconds so far, and the memory
    breakdown's categories that grow with connections and queues) and what the run's virtual
    host holds. The node is shared with whatever else runs: only the vhost's counts are the
    run's alone."""
    node = broker_process()
    breakdown = json.loads(ctl("memory_breakdown", "--formatter", "json",
                               tool="rabbitmq-diagnostics"))
    mb = {k: round(v["bytes"] / 2**20, 1) for k, v in breakdown.items()}
    connections = [line.split("\t") for line in ctl(
        "list_connections", "--no-table-headers", "vhost", "channels").splitlines() if line]
    ours = [c for c in connections if c[0] == vhost]
    queues = [line.split("\t") for line in ctl(
        "list_queues", "-p", vhost, "--no-table-headers", "name", "consumers", "messages",
        "messages_unacknowledged").splitlines() if line]
    return {
        "broker_pid": node.pid if node else None,
        "broker_rss_mb": round(node.memory_info().rss / 2**20, 1) if node else None,
        "broker_cpu_s": round(sum(node.cpu_times()[:2]), 1) if node else None,
        "breakdown_allocated_mb": round(sum(v for k, v in mb.items()
                                            if k != "reserved_unallocated"), 1),
        "memory_breakdown_mb": {k: mb[k] for k in (
            "connection_readers", "connection_writers", "connection_channels",
            "connection_other", "queue_procs", "binary", "other_proc", "metrics")
            if k in mb},
        "broker_connections_all_vhosts": len(connections),
        "connections": len(ours),
        "channels": sum(int(c[1]) for c in ours),
        "queues": len(queues),
        "consumers": sum(int(q[1]) for q in queues),
        "messages": sum(int(q[2]) for q in queues),
        "messages_unacknowledged": sum(int(q[3]) for q in queues),
        "queues_consumed": sum(1 for q in queues if int(q[1]) > 0),
    }


def run_round(db, client, action: str, vm_state: str, timeout: float) -> dict:
    with db.sessions() as session:
        uuids = list(session.scalars(select(Instance.uuid).where(Instance.deleted == 0)))
    t_save = time.monotonic()
    outcomes, refused = [], 0
    for uuid in uuids:
        try:
            with db.sessions.begin() as session:
                outcomes.append(act(session, uuid, action, service_down_time=60))
        except InstanceInvalidState:  # still in the previous round's state: not sent
            refused += 1
    sent = [outcome.server.uuid for outcome in outcomes]
    t0 = time.monotonic()
    for outcome in outcomes:
        send(client, outcome)
    t_sent = time.monotonic()
    done = 0
    while time.monotonic() - t0 < timeout:
        with db.sessions() as session:
            done = session.scalar(select(func.count()).select_from(Instance).where(
                Instance.uuid.in_(sent), Instance.vm_state == vm_state,
                Instance.task_state.is_(None)))
        if done == len(outcomes):
            break
        time.sleep(0.25)
    t_done = time.monotonic()
    request_ids = [outcome.request_id for outcome in outcomes]
    with db.sessions() as session:
        rows = session.execute(
            select(InstanceActionEvent.result, InstanceActionEvent.start_time,
                   InstanceActionEvent.finish_time)
            .join(InstanceAction, InstanceActionEvent.action_id == InstanceAction.id)
            .where(InstanceAction.request_id.in_(request_ids))).all()
    took = sorted((finish - start).total_seconds() for result, start, finish in rows
                  if result == "Success" and start and finish)
    drained = max(t_done - t0, 1e-9)
    return {
        "action": action, "instances": len(uuids), "save_s": round(t0 - t_save, 2),
        "cast_s": round(t_sent - t0, 2),
        "casts_per_second": round(len(uuids) / max(t_sent - t0, 1e-9), 1),
        "drained_s": round(drained, 2), "operations_per_second": round(done / drained, 1),
        "outcomes_saved": done,
        "events_success": sum(1 for r in rows if r[0] == "Success"),
        "events_error": sum(1 for r in rows if r[0] == "Error"),
        "refused": refused,
        # Not saved within the round's time-out (late or lost; the fleet's report says
        # whether messages were left in the queues at its end).
        "not_saved": len(outcomes) - done,
        "operation_p50_s": _pct(took, 0.5), "operation_p99_s": _pct(took, 0.99),
        "operation_max_s": round(took[-1], 3) if took else None,
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def wait_consumed(vhost: str, count: int, fleet: subprocess.Popen, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if fleet.poll() is not None:
            raise SystemExit(f"the fleet exited with status {fleet.returncode}")
        done = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost,
                               "--no-table-headers", "consumers"], capture_output=True,
                              text=True, timeout=120, check=False)
        if (done.returncode == 0
                and sum(1 for line in done.stdout.split() if int(line) > 0) >= count):
            return time.monotonic() - t0
        time.sleep(5)
    raise SystemExit(f"not every queue consumed after {timeout:.0f} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM (a time-out around the run) cleans up too: the vhost, the database, the fleet.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    vhost = f"agent-bench-fleet-rpc-{os.getpid()}"
    turl = f"rabbit://guest:guest@{BROKER}/{vhost}"
    state = tempfile.mkdtemp(prefix="bench-fleet-rpc-")
    pg = ThrowAwayPostgres(args.db) if args.db else None
    url = pg.__enter__() if pg else f"sqlite:///{state}/fleet.sqlite"
    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    out: dict = {"count": args.count, "instances_per_host": args.instances_per_host,
                 "rpc_connections": args.rpc_connections, "rpc_workers": args.rpc_workers,
                 "database": "postgresql" if pg else "sqlite"}
    fleet = None
    db = None
    try:
        out["broker_before"] = broker_figures(vhost)
        report_path = os.path.join(state, "fleet-report.json")
        cmd = [sys.executable, "-m", "agent", "fleet", "--count", str(args.count),
               "--instances-per-host", str(args.instances_per_host), "--db", url,
               "--transport-url", turl, "--state-path", state,
               "--rpc-connections", str(args.rpc_connections),
               "--rpc-workers", str(args.rpc_workers), "--report", report_path,
               "--progress-interval", "10"]
        if args.ramp is not None:
            cmd += ["--ramp", str(args.ramp)]
        log = open(os.path.join(state, "fleet.log"), "wb")
        fleet = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                 cwd=os.path.join(os.path.dirname(__file__), ".."))
        out["all_queues_consumed_after_s"] = round(
            wait_consumed(vhost, args.count, fleet, 900), 1)
        time.sleep(args.settle)
        proc = psutil.Process(fleet.pid)
        out["fleet_rss_mb_idle"] = round(proc.memory_info().rss / 2**20, 1)
        out["broker_consuming"] = broker_figures(vhost)
        db = make_database(url)
        out["rounds"] = []
        with RpcClient(parse(turl)) as client:
            for action, vm_state in ROUNDS[:args.rounds]:
                result = run_round(db, client, action, vm_state, args.round_timeout)
                out["rounds"].append(result)
                print(json.dumps(result), flush=True)
        out["fleet_rss_mb_after"] = round(proc.memory_info().rss / 2**20, 1)
        out["broker_after"] = broker_figures(vhost)
        fleet.send_signal(signal.SIGINT)
        stdout, _ = fleet.communicate(timeout=600)
        out["fleet_exit_status"] = fleet.returncode
        with open(report_path, encoding="utf-8") as fh:
            out["fleet_report"] = json.load(fh)
        print(stdout.decode(), end="")
    finally:
        if fleet is not None and fleet.poll() is None:
            fleet.kill()
        if db is not None:
            db.dispose()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True,
                       check=False)
        if pg is not None:
            pg.drop()
        shutil.rmtree(state, ignore_errors=True)
    out["load_average_at_end"] = os.getloadavg()
    pids = {out[k]["broker_pid"] for k in ("broker_before", "broker_consuming", "broker_after")}
    out["broker_restarted"] = len(pids) > 1
    print_summary(out)
    if out["broker_restarted"]:
        print("WARNING: the broker was restarted during the run (by something else on this "
              "machine): its memory figures do not compare")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2, sort_keys=True)
    return 0


def print_summary(out: dict) -> None:
    print(f"\n{out['count']} hosts x {out['instances_per_host']} instance(s), "
          f"{out['rpc_connections']} RPC connections, {out['rpc_workers']} RPC workers, "
          f"{out['database']}; all queues consumed after {out['all_queues_consumed_after_s']} s")
    for label in ("broker_before", "broker_consuming", "broker_after"):
        b = out[label]
        print(f"{label:<17} rss {b['broker_rss_mb']} MB (allocated "
              f"{b['breakdown_allocated_mb']} MB, CPU {b['broker_cpu_s']} s so far); "
              f"vhost: {b['connections']} connections, {b['channels']} channels, "
              f"{b['queues']} queues ({b['queues_consumed']} consumed), {b['consumers']} "
              f"consumers, {b['messages']} messages ({b['messages_unacknowledged']} unacked); "
              f"breakdown MB {b['memory_breakdown_mb']}")
    for r in out["rounds"]:
        print(f"round {r['action']:<6} {r['instances']} task_states saved in {r['save_s']} s, "
              f"cast in {r['cast_s']} s ({r['casts_per_second']}/s); every outcome saved "
              f"{r['drained_s']} s after the first cast ({r['operations_per_second']} "
              f"operations/s); outcomes {r['outcomes_saved']}, events Success "
              f"{r['events_success']} Error {r['events_error']}, not saved "
              f"{r['not_saved']} (refused {r['refused']}); one "
              f"operation (its event's start to finish) p50 {r['operation_p50_s']} s, p99 "
              f"{r['operation_p99_s']} s, max {r['operation_max_s']} s")
    f = out["fleet_report"]
    print(f"fleet RSS {out['fleet_rss_mb_idle']} MB idle, {out['fleet_rss_mb_after']} MB after "
          f"the rounds (peak {f['peak_rss_mb']} MB); CPU {f['cpu_percent_of_one_core']} % of "
          f"one core; beat lateness whole run p99 {f['lateness_all_p99_s']} s, max "
          f"{f['lateness_all_max_s']} s; false downs {f['false_downs']}; requests "
          f"{f['rpc_requests']} ({f['rpc_failed']} failed); messages left "
          f"{f['rpc_messages_left']}; load average {out['load_average_at_end']}")


if __name__ == "__main__":
    sys.exit(main())
