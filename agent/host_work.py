"""The interface between the agent's lifecycle (agent.service) and the work it does for its
host (agent.compute.host.ComputeHost): what the lifecycle calls, in which order, and what each
call may do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from agent.config import Config
    from agent.db.engine import Database
    from agent.db.service_queries import ServiceRecord
    from agent.periodic import PeriodicJob


class HostWork(Protocol):
    """The work the agent does for its host, plugged into the lifecycle by the compute side.

    Built with the host's service row as it is before start-up (None when the host has none
    yet); prepare() runs before the row is created or claimed, registered() once it is."""

    def prepare(self) -> str | None:
        """The checks that can refuse a start-up (driver.init_host, the node identity); writes
        nothing. Called once, before registration (a dry run leaves it to start()). Returns the
        node's uuid, which the agent's beats carry (None when there is none). Raises AgentError
        to stop the agent."""

    def registered(self, service: "ServiceRecord") -> None:
        """Called after prepare() once the service row is created or claimed, before its first
        beat: the identity prepare() decided is written down."""

    def start(self) -> None:
        """Called once, after registration and the first beat, on a thread of its own: the
        compute manager's init_host, the first resource audit (and prepare() first when it did
        not run). May take long. Raises AgentError to stop the agent."""

    def periodic_jobs(self) -> Sequence["PeriodicJob"]:
        """Called once after start(): the jobs to schedule (disabled ones may be included with
        a negative interval)."""

    def serve(self) -> None:
        """Called once by the daemon (not --once), after start() and the periodic jobs, before
        READY=1: start taking requests (the compute RPC server declares its queue here, so no
        cast sent after READY=1 is dropped). Must not raise for an unreachable broker."""

    def is_healthy(self) -> bool:
        """Read by the watchdog: false when the host work's own threads (the RPC consumer)
        died."""

    def stop(self) -> None:
        """Called once at shutdown, after the periodic jobs stopped (and possibly while start()
        still runs, when a stop is requested during start-up): release the driver."""

    def report(self) -> object:
        """The host's inventory after start(), printed by `agent --once`; in a dry run the
        lifecycle prints its `as_dry_run()`."""


# (conf, database, this host's service row, dry run): the row is None only in a dry run for a
# host that has none yet.
HostWorkFactory = Callable[["Config", "Database", "ServiceRecord | None", bool], HostWork]
