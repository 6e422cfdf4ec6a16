"""Compute RPC: latency from a cast to its saved outcome, against the bare broker round trip.

One real agent process (fakevirt, SQLite, `transport_url` on a virtual host of its own on the
local RabbitMQ) with `--instances` running guests. Measured in the same run:

- bare round trip: one publish of a request-sized message to a queue and its delivery to a
  consumer on another connection (kombu), `--samples` times: the floor any RPC pays;
- operation latency: the task_state saved and the instance action recorded as `agent server`
  does, then the cast (stop, then start, alternately, on one instance), until the outcome is
  read back from the database (polled every 0.2 ms), `--samples` times;
- throughput: a pause cast to every instance at once (each with its action), then unpause to
  all: operations per second until every row is saved;
- the agent's resident memory, idle with the RPC server consuming.

With `--profile FILE`, the agent process is sampled with py-spy (every thread, collapsed
stacks written to FILE) while the latency samples run.

    .venv/bin/python bench/bench_rpc.py [--samples 200] [--instances 200] [--profile FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import update  # noqa: E402

from agent.context import RequestContext  # noqa: E402
from agent.db import action_queries as actions  # noqa: E402
from agent.db.engine import make_database  # noqa: E402
from agent.db.models import Instance  # noqa: E402
from agent.rpc import wire  # noqa: E402
from agent.rpc.client import RpcClient  # noqa: E402
from agent.rpc.transport import parse  # noqa: E402
from tests.agent_process import AgentProcess, NotifySocket, agent_command, write_config  # noqa


def ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


def new_vhost(port: int) -> tuple[str, str]:
    """A virtual host of the run's own on the local broker (guest may use it): its name and
    its transport URL. The caller deletes it (`ctl("delete_vhost", name)`)."""
    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost, f"rabbit://guest:guest@127.0.0.1:{port}/{vhost}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bare_round_trips(url: str, samples: int) -> list[float]:
    import kombu

    transport = parse(url)
    body = wire.encode_request(RequestContext.new(), "stop_instance", "6.0",
                               {"instance": {"uuid": str(uuid.uuid4())}})
    times: list[float] = []
    with transport.connection() as pub, transport.connection() as sub:
        queue = kombu.Queue(f"bench-{uuid.uuid4().hex[:8]}", durable=False, auto_delete=True,
                            channel=sub.default_channel)
        queue.declare()
        got: list[float] = []
        consumer = kombu.Consumer(sub.default_channel, [queue], no_ack=True,
                                  on_message=lambda m: got.append(time.perf_counter()))
        consumer.consume()
        producer = kombu.Producer(pub.default_channel)
        for _ in range(samples):
            got.clear()
            start = time.perf_counter()
            producer.publish(body, routing_key=queue.name, content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2)
            while not got:
                sub.drain_events(timeout=10)
            times.append(got[0] - start)
    return times


def start_profiler(path: str, pid: int) -> subprocess.Popen | None:
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        print("py-spy not found: pip install py-spy (no profile taken)", file=sys.stderr)
        return None
    spy = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw",
                            "--rate", "1000", "--nonblocking", "--threads", "--output", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return spy


class Settled:
    """Polls the agent's SQLite file, through a plain sqlite3 connection (about 20 us a read,
    in autocommit: every read sees the last commit), every `POLL_S` seconds, until none of
    the instances has a task_state left: the moment the outcomes are saved."""

    POLL_S = 0.0002

    def __init__(self, path: str):
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def wait(self, uuids, deadline=120.0) -> float:
        marks = ",".join("?" * len(uuids))
        sql = (f"SELECT 1 FROM instances WHERE uuid IN ({marks}) AND task_state IS NOT NULL "
               "LIMIT 1")
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self._conn.execute(sql, list(uuids)).fetchone() is None:
                return time.perf_counter()
            time.sleep(self.POLL_S)
        raise SystemExit("timed out waiting for the outcomes")

    def close(self) -> None:
        self._conn.close()


def prepare(db, uuids, task_state: str, action: str) -> list:
    """What `agent server <action>` does before its cast: the task_state saved and the
    instance action recorded with the request id; the contexts to cast with."""
    contexts = [RequestContext.new() for _ in uuids]
    with db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid.in_(uuids))
                        .values(task_state=task_state))
        for u, ctx in zip(uuids, contexts):
            actions.start_action(session, instance_uuid=u, action=action,
                                 request_id=ctx.request_id)
    return contexts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--port", type=int, default=5672,
                        help="the broker's AMQP port (rabbitmqctl finds its node as usual: "
                             "RABBITMQ_NODENAME)")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample the agent with py-spy during the latency samples")
    args = parser.parse_args()
    vhost, url = new_vhost(args.port)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    host = f"bench-{uuid.uuid4().hex[:6]}"
    uuids = [str(uuid.UUID(int=i + 1)) for i in range(args.instances)]
    lines = ["[host]", f'hostname = "{host}"', "vcpus = 512", "memory_mb = 1048576",
             "local_gb = 10000", ""]
    for i, u in enumerate(uuids):
        lines += ["[[domains]]", f'uuid = "{u}"', f'name = "g{i}"', 'power_state = "running"',
                  "", "[[instances]]", f'uuid = "{u}"', f'display_name = "g{i}"',
                  'vm_state = "active"', "memory_mb = 64", ""]
    (tmp / "scenario.toml").write_text("\n".join(lines))
    config = write_config(tmp, host=host, transport_url=url, report_interval=10,
                          service_down_time=60)
    with open(config, "a") as fh:
        fh.write(f"\n[fakevirt]\nscenario = {tmp / 'scenario.toml'}\n")
    seeded = agent_command("db", "seed", str(tmp / "scenario.toml"), "--config", str(config))
    assert seeded.returncode == 0, seeded.stderr
    notify = NotifySocket(tmp / "notify")
    agent = AgentProcess(config, tmp / "agent.log", env={"NOTIFY_SOCKET": notify.path})
    db = make_database(f"sqlite:///{tmp}/state/agent.sqlite")
    try:
        assert notify.receive_until("READY=1") is not None, agent.log_text()
        time.sleep(3)
        rss = int([line.split()[1] for line in open(f"/proc/{agent.pid}/status")
                   if line.startswith("VmRSS")][0]) / 1024
        bare = bare_round_trips(url, args.samples)
        latencies = []
        settled = Settled(f"{tmp}/state/agent.sqlite")
        spy = start_profiler(args.profile, agent.pid) if args.profile else None
        with RpcClient(parse(url)) as client:
            target = uuids[0]
            for i in range(args.samples):
                method, task, action = (("stop_instance", "powering-off", "stop") if i % 2 == 0
                                        else ("start_instance", "powering-on", "start"))
                [ctx] = prepare(db, [target], task, action)
                start = time.perf_counter()
                client.cast(host, method, "6.0", ctx, instance={"uuid": target})
                latencies.append(settled.wait([target]) - start)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            rates = []
            for method, task, action in (("pause_instance", "pausing", "pause"),
                                         ("unpause_instance", "unpausing", "unpause")):
                contexts = prepare(db, uuids, task, action)
                start = time.perf_counter()
                for u, ctx in zip(uuids, contexts):
                    client.cast(host, method, "6.0", ctx, instance={"uuid": u})
                rates.append(len(uuids) / (settled.wait(uuids) - start))
        settled.close()
    finally:
        agent.stop()
        notify.close()
        db.dispose()
        ctl("delete_vhost", vhost)
    ms = 1000.0
    print(f"{'measure':44} {'p50':>9} {'p99':>9}")
    print(f"{'bare publish -> consume round trip (ms)':44} {statistics.median(bare) * ms:9.2f} "
          f"{percentile(bare, 99) * ms:9.2f}")
    print(f"{'cast -> saved outcome, stop/start (ms)':44} "
          f"{statistics.median(latencies) * ms:9.2f} {percentile(latencies, 99) * ms:9.2f}")
    print(f"ratio p50: {statistics.median(latencies) / statistics.median(bare):.1f}x")
    print(f"throughput, {len(uuids)} pause then unpause casts: "
          + ", ".join(f"{r:.0f} ops/s" for r in rates))
    print(f"agent idle RSS with the RPC server consuming: {rss:.1f} MiB "
          f"(SQLite, {len(uuids)} instances)")


if __name__ == "__main__":
    main()
