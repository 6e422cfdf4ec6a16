"""The agent's lifecycle: start-up sequence, running, shutdown (DESIGN.md "Startup sequence").

Start-up: open the database, make sure its schema is current, run the checks that can refuse the
start-up (virt driver init_host, the node identity check: a refused start changes nothing, not
even the service row), register this host's service (disabled with 'AUTO: starting' while it
starts; refused while another agent beats into it), send the first beat and start the heartbeat
thread, then run the rest of the host work (the compute manager's init_host, the first resource
audit) on a thread of its own, start the periodic jobs, lift 'AUTO: starting' and tell systemd
READY=1. While running, WATCHDOG=1 goes out only while the heartbeat and the periodic jobs are
healthy. SIGTERM or SIGINT stops it: STOPPING=1, the periodic jobs (waiting for the running job),
the host work, the heartbeat, the database engine; exit status 0.

A dry run (`agent --once --dry-run`) reads through a database that refuses writes and never
registers, beats or marks the service: it leaves the service row, even a live daemon's, exactly
as it was, whether it succeeds or fails.

Nothing heavy is imported before the first beat but the virt driver that the checks need (no
Alembic unless the schema is upgraded): the goal is a beat within 2 s of process start.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from agent.config import short_reason
from agent.errors import AgentError, ConfigError, DatabaseError, StartupError
from agent.host_work import HostWork, HostWorkFactory
from agent.log import request_context
from agent.service_report import ServiceReport
from agent.systemd import Notifier, watchdog_interval

if TYPE_CHECKING:
    from agent.config import Config
    from agent.db.engine import Database
    from agent.db.service_queries import ServiceRecord

LOG = logging.getLogger(__name__)

START_FAILED_PREFIX = "AUTO: start-up failed: "
DISABLED_REASON_MAX = 255  # services.disabled_reason is VARCHAR(255)


@contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
    """While inside: SIGTERM and SIGINT call `request_stop` with the signal's name (only the
    main thread can set handlers; elsewhere nothing is installed). The previous handlers are
    restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda num, _frame:
                                      request_stop(signal.Signals(num).name))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def start_failed_reason(reason: str) -> str:
    """The disabled_reason left on the service row when start-up fails: at most the column's
    255 characters, a longer reason cut after a whole word and ending in '...'."""
    from agent.display import clip

    return clip(START_FAILED_PREFIX + reason, DISABLED_REASON_MAX)


class AgentService:
    """One agent process's lifecycle. `run()` is the daemon, `run_once()` is `agent --once`.

    With `dry_run` (only for run_once) the database is opened read-only and the service row is
    read, never registered, claimed, beaten for, enabled or marked failed: a dry run writes
    nothing, whether it succeeds or fails."""

    def __init__(self, conf: "Config", *, dry_run: bool = False,
                 notifier: Notifier | None = None,
                 host_work_factory: HostWorkFactory | None = None,
                 watchdog_seconds: float | None = None):
        self.conf = conf
        self.dry_run = dry_run
        self.notifier = notifier if notifier is not None else Notifier.from_environment()
        self.watchdog_seconds = (watchdog_seconds if watchdog_seconds is not None
                                 else watchdog_interval())
        self._host_work_factory = host_work_factory
        self.db: Database | None = None
        self.service: ServiceRecord | None = None
        self.heartbeat = None
        self.periodic = None
        self.host_work: HostWork | None = None
        self.clean_exit = True
        self._stop_requested = threading.Event()
        self._watchdog_stop = threading.Event()
        self._watchdog_thread: threading.Thread | None = None

    # -- the daemon ---------------------------------------------------------------------------
    def run(self) -> int:
        """Start, run until SIGTERM/SIGINT, stop. Returns the exit status (0); a failed
        start-up raises AgentError after cleaning up. A dry run is one pass (run_once), never
        a daemon: ConfigError."""
        if self.dry_run:
            raise ConfigError("--dry-run needs --once: a dry run is one start-up pass that "
                              "changes nothing, not a daemon")
        with stop_on_signals(self.request_stop):
            if self.start():
                self._stop_requested.wait()
            self.stop()
            return 0

    def request_stop(self, why: str = "stop requested") -> None:
        """Ask the running agent to stop (thread- and signal-safe)."""
        if self._stop_requested.is_set():
            LOG.info("%s: already stopping", why)
            return
        LOG.info("%s: stopping", why)
        self._stop_requested.set()

    def start(self) -> bool:
        """The start-up sequence. True when the agent is running; False when a stop was
        requested during start-up. Raises AgentError (after cleaning up) when a step fails."""
        with request_context():
            try:
                self._register_and_beat(start_heartbeat=True)
                if self._stop_requested.is_set():
                    return False
                if self.host_work is not None:
                    self._status("registered; running init_host and the first resource audit")
                    if not self._start_host_work_interruptibly():
                        return False
                self._start_periodic_jobs()
                if self.host_work is not None:
                    self.host_work.serve()  # the RPC queue declared before READY=1
                self._finish_starting()
            except Exception as exc:  # noqa: BLE001 - every failure ends start-up the same way
                error = self._start_failed(exc)
                self._release()
                raise error from exc
            self.notifier.ready(status="running")
            LOG.info("compute agent running on host %s (service id %s)", self.conf.host,
                     self.service.id)
            self._start_watchdog()
            return True

    def stop(self) -> None:
        """Shut down in order, within graceful_shutdown_timeout for all the steps together
        (below systemd's TimeoutStopSec, whatever hangs)."""
        with request_context():
            self.notifier.stopping(status="stopping")
            self._release()
            LOG.info("compute agent stopped%s",
                     "" if self.clean_exit else " (some work did not finish in time)")

    def _release(self) -> None:
        """Stop what runs and release what is held, in order: the periodic jobs, the host
        work, the heartbeat, the database engine."""
        # One budget for the whole shutdown: a hung hypervisor can hold up both the running
        # job and the host work, and their waits must not add up past TimeoutStopSec. A step
        # reached with the budget spent still gets a second to finish.
        deadline = time.monotonic() + float(self.conf.graceful_shutdown_timeout)

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        self._watchdog_stop.set()
        if self.periodic is not None:
            self._bounded("periodic jobs", lambda: self.periodic.shutdown(wait=True),
                          remaining())
        if self.host_work is not None:
            self._bounded("host work", self.host_work.stop, remaining())
        if self.heartbeat is not None:
            self.heartbeat.stop(timeout=min(remaining(), 10.0))
        if self.db is not None:
            self.db.dispose()
        self.notifier.close()

    # -- agent --once -------------------------------------------------------------------------
    def run_once(self) -> object:
        """One start-up pass without the periodic jobs: register, one beat, the host work's
        start(); returns its report (or a ServiceReport without host work) and stops."""
        with request_context():
            try:
                if self.dry_run:
                    self._open_for_dry_run()
                else:
                    self._register_and_beat(start_heartbeat=False)
                if self.host_work is not None:
                    self.host_work.start()
                if not self.dry_run:
                    self._finish_starting()
                if self.host_work is not None:
                    report = self.host_work.report()
                    # The host work ran on parts that change nothing; its report says so.
                    return report.as_dry_run() if self.dry_run else report
                return ServiceReport.read(self.db, self.conf.host, self.service)
            except Exception as exc:  # noqa: BLE001
                raise self._start_failed(exc) from exc
            finally:
                self._release()

    # -- start-up steps -----------------------------------------------------------------------
    def _register_and_beat(self, *, start_heartbeat: bool) -> None:
        from agent.db import migrate
        from agent.db.engine import database_from_conf
        from agent.registry import load_service
        from agent.startup import register_and_beat

        conf = self.conf
        self._status("opening the database")
        self.db = database_from_conf(conf)
        LOG.info("database %s", self.db.url)
        migrate.ensure_schema(self.db)
        if self._host_work_factory is not None:
            # Built first, so that a refused start-up still releases its driver (_release).
            self.host_work = self._host_work_factory(conf, self.db,
                                                     load_service(self.db, conf.host),
                                                     self.dry_run)
        interval = conf.report_interval
        # The first beat goes out in register_and_beat, before the host work's start(); the
        # thread then beats every interval from now.
        registered = register_and_beat(conf, self.db, self.host_work, status=self._status,
                                       initial_delay=interval)
        self.service, self.heartbeat = registered.service, registered.heartbeat
        if start_heartbeat:
            self.heartbeat.start()
        LOG.info("service id %s registered for host %s (%s); heartbeat every %s s",
                 self.service.id, self.service.host,
                 "disabled: " + self.service.disabled_reason if self.service.disabled
                 else "enabled", interval)
        if self._host_work_factory is None:
            LOG.warning("no host work is plugged in: the agent registers and heartbeats, "
                        "and runs no driver, no init_host and no resource audit")

    def _open_for_dry_run(self) -> None:
        """A dry run's start: the database opened read-only (agent.db.read_only: any write
        raises), its schema checked but never created or upgraded, and this host's service row
        read but never created, claimed or beaten for. The host work gets the row as it is, or
        None when the host has none yet."""
        from agent.db import migrate
        from agent.db.engine import database_from_conf
        from agent.registry import load_service

        conf = self.conf
        self._status("opening the database read-only (dry run)")
        self.db = database_from_conf(conf, read_only=True)
        LOG.info("database %s, read-only: a dry run writes nothing", self.db.url)
        try:
            migrate.ensure_schema(self.db, auto_upgrade=False)
        except DatabaseError as exc:
            raise DatabaseError(f"{exc} (a dry run creates and upgrades nothing)") from None
        self.service = load_service(self.db, conf.host)
        if self.service is None:
            LOG.info("dry run: host %s has no service row; a start would register one",
                     conf.host)
        else:
            LOG.info("dry run: service id %s of host %s left as it is (%s), no beat",
                     self.service.id, self.service.host,
                     "disabled: " + (self.service.disabled_reason or "")
                     if self.service.disabled else "enabled")
        if self._host_work_factory is not None:
            self.host_work = self._host_work_factory(conf, self.db, self.service, True)

    def _start_host_work_interruptibly(self) -> bool:
        """Run host_work.start() on its own thread so that a stop request is honoured at
        once; True when it finished, False when a stop came first. Its error is re-raised."""
        outcome: dict[str, BaseException] = {}

        def target() -> None:
            with request_context():
                try:
                    self.host_work.start()
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    outcome["error"] = exc

        thread = threading.Thread(target=target, name="host-work-start", daemon=True)
        thread.start()
        while thread.is_alive() and not self._stop_requested.is_set():
            thread.join(0.2)
        if thread.is_alive():
            LOG.info("stop requested while the host work was starting")
            return False
        if "error" in outcome:
            raise outcome["error"]
        return not self._stop_requested.is_set()

    def _start_periodic_jobs(self) -> None:
        from agent.periodic import PeriodicScheduler

        jobs = list(self.host_work.periodic_jobs()) if self.host_work is not None else []
        self.periodic = PeriodicScheduler(jobs, fuzzy_delay=self.conf.periodic_fuzzy_delay)
        self.periodic.start()

    def _finish_starting(self) -> None:
        from agent.registry import finish_starting

        finish_starting(self.db, self.service.id)

    def _start_failed(self, exc: BaseException) -> AgentError:
        reason = short_reason(exc)
        LOG.error("start-up failed: %s", reason)
        LOG.debug("start-up failure", exc_info=exc)
        self.notifier.stopping(status=f"start-up failed: {reason}")
        self._watchdog_stop.set()
        if self.service is not None and self.db is not None and not self.dry_run:
            self._mark_start_failed(reason)
        if isinstance(exc, AgentError):
            return exc
        return StartupError(f"start-up failed: {reason}")

    def _mark_start_failed(self, reason: str) -> None:
        """Replace 'AUTO: starting' by 'AUTO: start-up failed: <reason>'; a row an operator
        disabled meanwhile keeps the operator's reason."""
        from agent.registry import AUTO_STARTING, replace_auto_reason

        try:
            replace_auto_reason(self.db, self.service.id, AUTO_STARTING,
                                start_failed_reason(reason))
        except Exception as exc:  # noqa: BLE001 - already failing; say so and go on
            LOG.warning("could not record the failed start-up on the service row: %s",
                        short_reason(exc))

    def _status(self, text: str) -> None:
        LOG.info("%s", text)
        self.notifier.status(text)

    # -- running ------------------------------------------------------------------------------
    def is_healthy(self) -> bool:
        """Heartbeat and periodic jobs alive and on time, the host work's threads alive."""
        return bool(self.heartbeat is not None and self.heartbeat.is_healthy()
                    and self.periodic is not None and self.periodic.is_healthy()
                    and (self.host_work is None or self.host_work.is_healthy()))

    def _start_watchdog(self) -> None:
        if self.watchdog_seconds is None or not self.notifier.enabled:
            return
        period = self.watchdog_seconds / 2
        LOG.info("systemd watchdog: %.3g s; WATCHDOG=1 every %.3g s while healthy",
                 self.watchdog_seconds, period)
        self._watchdog_thread = threading.Thread(target=self._watchdog_loop, args=(period,),
                                                 name="watchdog", daemon=True)
        self._watchdog_thread.start()

    def _watchdog_loop(self, period: float) -> None:
        unhealthy_since: float | None = None
        while True:
            healthy = self.is_healthy()
            if healthy:
                self.notifier.watchdog()
                if unhealthy_since is not None:
                    LOG.info("healthy again after %.0f s: WATCHDOG=1 resumed",
                             time.monotonic() - unhealthy_since)
                    unhealthy_since = None
            elif unhealthy_since is None:
                unhealthy_since = time.monotonic()
                LOG.error("unhealthy (heartbeat %s, periodic jobs %s, host work %s): WATCHDOG=1 "
                          "withheld; systemd restarts the agent if this lasts",
                          "ok" if self.heartbeat and self.heartbeat.is_healthy() else "stuck",
                          "ok" if self.periodic and self.periodic.is_healthy() else "stopped",
                          "ok" if not self.host_work or self.host_work.is_healthy() else "dead")
            if self._watchdog_stop.wait(period):
                return

    def _bounded(self, what: str, func: Callable[[], None], timeout: float) -> None:
        """Run a shutdown step, waiting at most `timeout` seconds for it."""
        errors: list[BaseException] = []

        def target() -> None:
            try:
                func()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        thread = threading.Thread(target=target, name=f"stop-{what.replace(' ', '-')}",
                                  daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            self.clean_exit = False
            LOG.error("%s did not stop within %.0f s (graceful_shutdown_timeout bounds the "
                      "whole shutdown); exiting "
                      "without it", what, timeout)
        elif errors:
            LOG.error("stopping %s failed: %s", what, short_reason(errors[0]),
                      exc_info=errors[0])
