"""Compute RPC: where a cast's time goes, stage by stage, in one process.

The agent's own RPC server (agent.rpc.server.RpcServer with the operations endpoint, on
fakevirt and a fresh SQLite file, no firewall) consumes its queue on a virtual host of its own
on the local RabbitMQ; the same process casts stop and start alternately to one instance (its
task_state and action saved first, as `agent server` does, then 20 ms for the previous
acknowledgement to settle) and waits on an event set when the operation has returned (its
outcome and event saved). Timestamps split each sample into:

- publish: the client's `cast` call (envelope, JSON, the AMQP publish);
- delivery and dispatch: from the publish's return to the worker thread starting the
  operation (the broker, the consumer thread's decode and bind, the worker pool's hand-over);
- operation: the endpoint method, from its start to its return (re-read, plan, driver,
  firewall, the one write transaction, two log lines through the agent's formatter).

Also printed: the bare publish -> consume round trip on the same broker (as bench_rpc.py).

    .venv/bin/python bench/bench_rpc_split.py [--samples 500] [--port 5672]
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_operation import HOST, U, one_instance_host, prepare  # noqa: E402
from bench.bench_rpc import bare_round_trips, ctl, new_vhost, percentile  # noqa: E402

from agent.compute.operations import METHODS, InstanceOperations  # noqa: E402
from agent.log import RedactingFormatter, RequestIdFilter  # noqa: E402
from agent.network.firewall import NoopFirewall  # noqa: E402
from agent.rpc.client import RpcClient  # noqa: E402
from agent.rpc.dispatcher import Dispatcher  # noqa: E402
from agent.rpc.server import RpcServer  # noqa: E402
from agent.rpc.transport import parse  # noqa: E402


class TimedOperations(InstanceOperations):
    """The endpoint, stamping when stop_instance and start_instance start and return."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = self.returned = 0.0
        self.done = threading.Event()

    def _timed(self, method, context, instance):
        self.started = time.perf_counter()
        try:
            return getattr(super(), method)(context, instance)
        finally:
            self.returned = time.perf_counter()
            self.done.set()

    def stop_instance(self, context, instance, clean_shutdown=True):
        return self._timed("stop_instance", context, instance)

    def start_instance(self, context, instance):
        return self._timed("start_instance", context, instance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--port", type=int, default=5672)
    args = parser.parse_args()
    # The agent's log format and formatter, into memory: an operation's two INFO lines cost
    # what they cost in the daemon.
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(RedactingFormatter())
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    vhost, url = new_vhost(args.port)
    db, driver = one_instance_host(Path(tempfile.mkdtemp(prefix="bench-rpc-split-")))
    ops = TimedOperations(db, driver, NoopFirewall(), HOST)
    server = RpcServer(parse(url), HOST, Dispatcher(ops, METHODS))
    try:
        assert server.start(), "the broker did not take the queue"
        bare = bare_round_trips(url, args.samples)
        publish, delivery, operation, total = [], [], [], []
        with RpcClient(parse(url)) as client:
            for i in range(args.samples + 20):
                ctx = prepare(db, i)
                # The previous operation's acknowledgement and its consumer loop (every 5 ms
                # while a request is in flight) are done before the next cast: one operation
                # at a time, as bench_rpc.py measures across processes.
                time.sleep(0.02)
                method = "stop_instance" if i % 2 == 0 else "start_instance"
                ops.done.clear()
                t0 = time.perf_counter()
                client.cast(HOST, method, "6.0", ctx, instance={"uuid": U})
                t1 = time.perf_counter()
                assert ops.done.wait(30), "the operation did not run"
                if i < 20:  # warm-up
                    continue
                publish.append(t1 - t0)
                delivery.append(ops.started - t1)
                operation.append(ops.returned - ops.started)
                total.append(ops.returned - t0)
    finally:
        server.stop()
        db.dispose()
        ctl("delete_vhost", vhost)
    ms = 1000.0
    print(f"{'stage (one process, ' + str(args.samples) + ' samples)':46} {'p50 ms':>8} "
          f"{'p99 ms':>8}")
    for label, values in (("bare publish -> consume round trip", bare),
                          ("publish (the client's cast call)", publish),
                          ("delivery and dispatch to the worker", delivery),
                          ("operation (endpoint call, outcome saved)", operation),
                          ("cast -> outcome saved", total)):
        print(f"{label:46} {statistics.median(values) * ms:8.3f} "
              f"{percentile(values, 99) * ms:8.3f}")
    print(f"ratio p50 (cast -> saved / bare): "
          f"{statistics.median(total) / statistics.median(bare):.1f}x")


if __name__ == "__main__":
    main()
