"""The fleet's compute RPC: every simulated host consumes its own ``compute.<host>`` queue
(exchange ``nova``, nova's flags) and performs what is cast to it with the agent's own
operations, over a few shared broker connections.

A real agent consumes its queue on a connection of its own (`ComputeHost.serve`). N simulated
hosts with one connection each would cost this process N consumer threads, N sockets and N
AMQP heartbeats, and on 2 cores the threads alone would take the CPU the fleet's heartbeats
need. So the fleet opens `connections` of the agent's own `RpcServer`s (agent.rpc.server: no
second consumer) and gives the hosts to them in turn as they finish starting; each server is
one connection and one channel whose one kombu Consumer consumes all its hosts' queues, and
the operations of every host run on `workers` threads shared by all the servers (a fixed
budget, as the fleet's beat workers, whatever the number of connections, so that the database
pool stays small too). Each host's operations are its own (`ComputeHost.rpc_dispatcher`: its
fakevirt driver, instance locks and rows). What this means
for what a load test measures (queues, consumers and messages as N agents make them; not the
broker's cost of N connections unless `connections` is N): docs/performance.md.

At the end the queues are deleted, and the messages still in them counted (none should be),
unless the fleet keeps what it made (`--keep`).
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from agent.display import plural
from agent.redact import redact_text
from agent.rpc.server import RpcServer
from agent.rpc.transport import Transport

LOG = logging.getLogger(__name__)

MIN_BUSY_POLL = 0.02  # seconds: what an acknowledgement may wait with a few connections
POLLS_PER_SECOND = 200


class FleetConsumers:
    """`connections` RpcServers sharing the fleet's hosts; `start()` once, `serve()` per host,
    `stop()` once, then `remove_queues()`."""

    def __init__(self, transport: Transport, connections: int, workers: int, *,
                 backoff: tuple[float, float] = (1.0, 30.0)):
        if connections < 1 or workers < 1:
            raise ValueError("FleetConsumers: at least one connection and one worker")
        self.transport = transport
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fleet-rpc-worker")
        # A server with requests running wakes every busy_poll seconds to acknowledge the
        # finished ones. The agent's 5 ms would make C servers wake 200 x C times a second
        # while the shared workers are busy (with C = 1,000 that starved the whole machine):
        # together they wake at most about POLLS_PER_SECOND times a second, each at least
        # every MIN_BUSY_POLL seconds.
        busy_poll = max(MIN_BUSY_POLL, connections / POLLS_PER_SECOND)
        self.servers = [RpcServer(transport, workers=workers, backoff=backoff,
                                  name=f"fleet-rpc-{index}", executor=self._pool,
                                  busy_poll=busy_poll)
                        for index in range(connections)]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.hosts = 0

    @property
    def connections(self) -> int:
        return len(self.servers)

    def start(self, declare_timeout: float = 10.0) -> bool:
        """Connect every server (no queue yet); False when one could not reach the broker
        within `declare_timeout` (it said so once and keeps retrying)."""
        return all([server.start(declare_timeout) for server in self.servers])

    def serve(self, host: str, dispatcher) -> str:
        """Consume `host`'s queue, on the next server in turn; its name. Thread-safe."""
        with self._lock:
            server = self.servers[next(self._turn) % len(self.servers)]
            self.hosts += 1
        return server.add_host(host, dispatcher)

    def queues_consumed(self) -> int:
        """Queues consumed now, over every connection."""
        return sum(server.queues_consumed for server in self.servers)

    def counts(self) -> dict[str, int]:
        """RpcServer.counts() summed over the servers."""
        total: dict[str, int] = {}
        for server in self.servers:
            for key, value in server.counts().items():
                total[key] = total.get(key, 0) + value
        return total

    def stop(self) -> None:
        """Stop every server at once: each lets its running operations finish and
        acknowledges them; then the shared worker threads end."""
        for server in self.servers:
            server.stop(wait=False)
        for server in self.servers:
            server.stop()
        self._pool.shutdown(wait=True)

    def queue_names(self) -> list[str]:
        return [name for server in self.servers for name in server.queue_names()]

    def remove_queues(self, keep: bool = False) -> tuple[int | None, str]:
        """After stop(): delete the hosts' queues (`keep`: only count their messages). Returns
        (messages still in them, None when the broker could not tell; what was done)."""
        names = self.queue_names()
        left = 0
        try:
            with self.transport.connection() as conn:
                channel = conn.channel()
                for name in names:
                    if keep:
                        left += channel.queue_declare(name, passive=True).message_count
                    else:
                        left += channel.queue_delete(name) or 0
        except Exception as exc:  # noqa: BLE001 - the report says so; the rows still go
            reason = redact_text(str(exc) or type(exc).__name__)
            LOG.warning("fleet: the compute queues could not be %s: %s",
                        "counted" if keep else "deleted", reason)
            return None, f"compute queues not {'counted' if keep else 'deleted'} ({reason})"
        if keep:
            return left, f"{plural(len(names), 'compute queue')} kept"
        return left, f"{plural(len(names), 'compute queue')} deleted"
