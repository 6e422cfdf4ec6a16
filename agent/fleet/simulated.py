"""One simulated host of a fleet: the single agent's start-up (agent.startup, the same function
the agent runs) and periodic work for one host name, on a fakevirt hypervisor, sharing the
fleet's database.

Three differences from a real host, all about threads: lifecycle events are not handled (each
host would need its own event worker thread, and a fake hypervisor emits events only when told
to; the periodic power-state sync still runs), the firewall is the no-op one, and with
transport_url set its ``compute.<host>`` queue is consumed on one of the fleet's few shared
broker connections, not on one of its own (consumers.py), by the agent's own RPC server and
instance operations (`rpc_dispatcher`).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from agent.fleet.beat_scheduler import Task


def host_names(prefix: str, count: int) -> list[str]:
    width = max(5, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def agent_conf(conf, host: str):
    """The configuration of one simulated agent: the fleet's, with its own host name, the fake
    driver, no firewall and no lifecycle-event thread (see the module docstring)."""
    values = dict(conf.values)
    values[("DEFAULT", "host")] = host
    values[("DEFAULT", "compute_driver")] = "fake"
    values[("DEFAULT", "firewall_driver")] = "noop"
    values[("workarounds", "handle_virt_lifecycle_events")] = False
    return dataclasses.replace(conf, values=MappingProxyType(values))


class SimulatedAgent:
    """One host of the fleet. Its state directory holds only its node identity file."""

    def __init__(self, conf, db, scenario, state_dir: str):
        self.conf = conf
        self.host = conf.host
        self.db = db
        self.scenario = scenario
        self.state_dir = state_dir
        self.service = None
        self.heartbeat = None
        self.host_work = None
        self.tasks: list[Task] = []

    def register(self) -> bool:
        """The single agent's start-up up to its first beat (agent.startup.register_and_beat:
        the host work's checks, registration, the first beat); True when the beat went through.
        The host work is built here, on fakevirt with this host's scenario and the no-op
        firewall."""
        from agent.startup import register_and_beat

        self.host_work = self._host_work()
        registered = register_and_beat(self.conf, self.db, self.host_work,
                                       heartbeat_name=f"heartbeat {self.host}")
        self.service, self.heartbeat = registered.service, registered.heartbeat
        return registered.first_beat_ok

    def _host_work(self):
        from agent.compute.host import ComputeHost
        from agent.compute.node_identity import NodeIdentityStore
        from agent.network.firewall import NoopFirewall
        from fakevirt.driver import FakeDriver

        return ComputeHost(self.conf, self.db, None,
                           driver=FakeDriver(self.conf, scenario=self.scenario),
                           firewall=NoopFirewall(),
                           identity_store=NodeIdentityStore(self.state_dir))

    def start_host_work(self) -> None:
        """The rest of the single agent's start-up: init_host and the first resource audit."""
        self.host_work.start()

    def rpc_dispatcher(self):
        """This host's compute RPC endpoint (ComputeHost.rpc_dispatcher: the agent's instance
        operations on this host's fakevirt driver and rows), once start_host_work() ran."""
        return self.host_work.rpc_dispatcher()

    def finish_starting(self) -> None:
        from agent.registry import finish_starting

        finish_starting(self.db, self.service.id)

    def start_failed(self, reason: str) -> None:
        """After a failed start-up, as the single agent does: nothing of it keeps running, and
        the row's 'AUTO: starting' becomes 'AUTO: start-up failed: <reason>'."""
        from agent.registry import AUTO_STARTING, replace_auto_reason
        from agent.service import start_failed_reason

        try:
            self.stop()
        finally:
            if self.service is not None:
                replace_auto_reason(self.db, self.service.id, AUTO_STARTING,
                                    start_failed_reason(reason))

    def stop(self) -> None:
        for task in self.tasks:
            task.cancelled = True
        if self.host_work is not None:
            self.host_work.stop()
