"""ComputeHost: the compute side of one host, plugged into the agent's lifecycle (the daemon's
HostWork protocol): the virt driver, the firewall, the compute manager and the resource tracker.

prepare(): driver.init_host and the node identity check (DESIGN.md step 4), the checks that can
refuse a start-up; they write nothing, and for a host without a service row they run before the
row is created. start(): the connection guard, the manager's init_host, the first resource audit
(steps 5-6). Any failure raises and stops the agent before anything is destroyed when the
identity does not match.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from agent.compute.manager import ComputeManager, InitHostResult
from agent.compute.node_identity import NodeIdentityStore
from agent.compute.resource_tracker import AuditResult, ResourceTracker
from agent.inventory import Inventory, ServiceStatus

LOG = logging.getLogger(__name__)


class ComputeHost:
    """Built by the agent as `ComputeHost(conf, db, service)`; driver, firewall and identity
    store may be injected (tests, benchmarks, and a dry run: a recording driver, a firewall
    that restores nothing, with a read-only `db`; see agent.commands.daemon), and the
    manager's monotonic clock (seconds) for tests that must not depend on the time init_host
    takes."""

    def __init__(self, conf, db, service, *, driver=None, firewall=None,
                 identity_store: NodeIdentityStore | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if driver is None:
            from agent.virt.loader import load_driver

            driver = load_driver(conf)
        if firewall is None:
            from agent.network.firewall import load_firewall

            firewall = load_firewall(conf)
        self.conf = conf
        self.db = db
        self.service = service
        self.host = service.host if service is not None else conf.host
        self.driver = driver
        self.firewall = firewall
        self.manager = ComputeManager(conf, db, driver, firewall, host=self.host, clock=clock)
        self.tracker = ResourceTracker(conf, db, driver,
                                       service_id=service.id if service is not None else None,
                                       host=self.host, identity_store=identity_store)
        self.driver_info = None
        self.rpc_server = None  # the compute RPC server, once serve() started it
        self._guard = None  # the ConnectionGuard, once start() registered it
        self._prepared = False
        self.init_result: InitHostResult | None = None

    def prepare(self) -> str | None:
        """driver.init_host, then the node identity check; nothing is written. Returns the
        node's uuid (the one the compute_id file holds, or will hold for a new node). Runs once;
        start() runs it when the lifecycle did not."""
        if not self._prepared:
            self.driver.init_host(self.host)
            # The driver has logged its own warnings; they also go into the inventory.
            self.driver_info = self.driver.get_driver_info()
            self.tracker.check_node_identity()
            self._prepared = True
        return self.tracker.node_uuid

    def registered(self, service) -> None:
        """The service row now exists (created or claimed after prepare()): its id goes on the
        node rows, and a new node's compute_id file is written before the row's first beat."""
        self.service = service
        self.tracker.service_id = service.id
        self.tracker.persist_identity()

    def start(self) -> None:
        self.prepare()
        if self.service is not None:
            from agent.compute.connection_guard import ConnectionGuard

            self._guard = ConnectionGuard(self.db, self.service.id)
            self.driver.register_connection_listener(self._guard)
        self.init_result = self.manager.init_host()
        # Seconds on a large host: say so, the audit's own line ends it.
        LOG.info("start-up resource audit")
        self.tracker.update_available_resource(startup=True)

    def serve(self) -> None:
        """The daemon, after start() and before READY=1: with a transport (transport_url, or the
        SQLite broker file when the database is SQLite: agent.rpc.transport.url_for), declare
        compute.<host> and consume it (agent.rpc.server) on a connection of its own, with
        `rpc_dispatcher()`. A broker that cannot be reached is logged once and retried; the
        agent runs on."""
        from agent.rpc.transport import url_for

        url = url_for(self.conf)
        if not url:  # (a dry run is one pass, never a daemon: no serve)
            return
        from agent.rpc.server import RpcServer
        from agent.rpc.transport import parse

        self.rpc_server = RpcServer(parse(url), self.host, self.rpc_dispatcher())
        self.rpc_server.start()

    def rpc_dispatcher(self):
        """This host's compute RPC endpoint: its instance operations (agent.compute.operations,
        nova's method names) on its driver, firewall, database and instance locks, behind a
        `Dispatcher`. serve() consumes it; `agent fleet` hands each simulated host's to one of
        its few shared RPC servers."""
        from agent.compute.operations import METHODS, InstanceOperations
        from agent.rpc.dispatcher import Dispatcher

        endpoint = InstanceOperations(self.db, self.driver, self.firewall, self.host,
                                      locks=self.manager.locks)
        return Dispatcher(endpoint, METHODS)

    def is_healthy(self) -> bool:
        """Every worker thread of the host work is running: the lifecycle-event worker (once
        started) and the RPC consumer (once serving; a broker that cannot be reached is not
        unhealthy: the agent keeps beating and the consumer retries). Read by the watchdog."""
        return (self.manager.power_sync.is_healthy()
                and (self.rpc_server is None or self.rpc_server.is_healthy()))

    def periodic_jobs(self) -> Sequence:
        from agent.periodic import PeriodicJob, spacing_from_option

        audit = spacing_from_option(self.conf.update_resources_interval)
        sync = spacing_from_option(self.conf.sync_power_state_interval)
        reap = self.conf.running_deleted_instance_poll_interval
        return [
            PeriodicJob("update_available_resource", self.update_available_resource,
                        audit if audit is not None else -1),
            # nova runs the power sync at the first tick (run_immediately).
            PeriodicJob("sync_power_states", self.manager.sync_power_states,
                        sync if sync is not None else -1, initial_delay=0),
            # nova's _cleanup_running_deleted_instances: 0 disables it, first run at once.
            PeriodicJob("cleanup_running_deleted_instances",
                        self.cleanup_running_deleted_instances, reap if reap > 0 else -1,
                        initial_delay=0),
        ]

    def cleanup_running_deleted_instances(self) -> list[str]:
        from agent.compute.reaper import cleanup_running_deleted_instances

        return cleanup_running_deleted_instances(
            self.db, self.driver, self.firewall, self.host,
            self.conf.running_deleted_instance_action, self.manager.locks)

    def update_available_resource(self) -> AuditResult:
        return self.tracker.update_available_resource(startup=False)

    def stop(self) -> None:
        try:
            if self.rpc_server is not None:
                self.rpc_server.stop()
            self.manager.stop()
            self.driver.register_connection_listener(None)
            if self._guard is not None:
                self._guard.close()
        finally:
            self.driver.cleanup_host()

    def report(self) -> Inventory:
        audit = self.tracker.last_audit
        init = self.init_result
        return Inventory(
            host=self.host, driver=self.driver_info,
            nodes=audit.nodes if audit else (),
            instances=init.instances if init else (),
            evacuated=init.evacuated if init else (),
            unknown_domains=init.unknown_domains if init else (),
            orphan_nodes=audit.orphan_nodes if audit else (),
            service=self.service_status())

    def service_status(self) -> ServiceStatus | None:
        """This host's service row as it is now, judged up or down on the database's clock
        (nova's hypervisor `state`/`status`); None when the host has no service row."""
        from agent.db.service_queries import list_services
        from agent.liveness import state_of
        from agent.vocabulary import COMPUTE_BINARY

        binary = self.service.binary if self.service is not None else COMPUTE_BINARY
        with self.db.sessions() as session:
            db_now, rows = list_services(session, self.host, binary)
        if not rows:
            return None
        row = rows[0]
        return ServiceStatus(host=row.host, id=row.id, uuid=row.uuid, disabled=row.disabled,
                             disabled_reason=row.disabled_reason,
                             up=state_of(row, db_now, self.conf.service_down_time).up)
