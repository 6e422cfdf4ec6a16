"""FleetRunner: N simulated compute agents in one process against one database.

Each `SimulatedAgent` does what the single agent does at start-up and while it runs, with the
same code: `agent.startup.register_and_beat` (the host work's checks, then `register_service`,
disabled 'AUTO: starting', and a first `Heartbeat.beat()`), `ComputeHost.start()` (the compute
manager's init_host, the start-up audit),
`finish_starting`, then `Heartbeat.beat()` every report_interval and the host's periodic jobs
(`ComputeHost.periodic_jobs()`: resource audit, power-state sync). What is shared is the
machinery: one engine and pool, one `DueScheduler` for every heartbeat, one for every periodic
job, a small pool for start-ups, one `services list` poller on a connection of its own, and
with transport_url set a few broker connections that consume every host's ``compute.<host>``
queue (consumers.py). How a simulated host differs from a real one: simulated.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from agent.config import short_reason
from agent.display import plural
from agent.failure_log import FailureLog
from agent.fleet.cleanup import clean_up
from agent.fleet.beat_scheduler import DueScheduler, Task
from agent.fleet.report import FleetReport, _ms
from agent.fleet.simulated import SimulatedAgent, agent_conf, host_names
from agent.fleet.statements import StatementCounter
from agent.log import request_context

LOG = logging.getLogger(__name__)

# Start-ups wait while heartbeats run later than this: a start-up (registration, init_host,
# the first audit) costs the process as much as dozens of beats, and beats must not queue
# behind it. The single agent isolates its heartbeat thread from start-up work for the same
# reason.
START_YIELD_LATENESS = 0.05  # seconds

AUDIT_JOB = "update_available_resource"
SYNC_JOB = "sync_power_states"


@dataclass(frozen=True)
class FleetOptions:
    count: int
    instances_per_host: int = 2
    duration: float | None = None        # None: until stopped
    ramp: float | None = None            # seconds over which agents start; None: report_interval
    host_prefix: str = "fleet-"
    beat_workers: int = 8
    job_workers: int = 2
    start_workers: int = 2
    poll_interval: float | None = None   # None: report_interval
    progress_interval: float = 5.0
    seed: int | None = None
    keep: bool = False                   # leave the hosts' rows and state directories behind
    rpc_connections: int = 4             # with transport_url: connections consuming the queues
    rpc_workers: int = 4                 # threads running operations, shared by the connections

    def check(self) -> None:
        from agent.errors import ConfigError

        for name in ("count", "beat_workers", "job_workers", "start_workers",
                     "rpc_connections", "rpc_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                  "at least 1")
        if self.instances_per_host < 0:
            raise ConfigError(f"--instances-per-host {self.instances_per_host}: must be 0 or "
                              "more")
        if self.progress_interval <= 0:
            raise ConfigError(f"--progress-interval {self.progress_interval:g}: must be positive")
        for name in ("duration", "ramp", "poll_interval"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value:g}: must not be negative")


class FleetRunner:
    def __init__(self, conf, options: FleetOptions, *,
                 clock: Callable[[], float] = time.monotonic):
        options.check()
        self.conf = conf
        self.options = options
        self._clock = clock
        self._rng = random.Random(options.seed)
        self._stop = threading.Event()
        self._stopped_by = "duration"
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self.agents: list[SimulatedAgent] = []
        self._by_host: dict[str, SimulatedAgent] = {}
        self.started = 0
        self.failed = 0
        self._last_started_at: float | None = None
        self._job_runs: dict[str, int] = {}
        self._job_errors: dict[str, int] = {}
        self._job_failures: dict[str, FailureLog] = {}
        self.statements = StatementCounter()
        self.interval = float(conf.report_interval)
        self.beats = DueScheduler("beats", options.beat_workers, clock=clock, rng=self._rng)
        self.jobs = DueScheduler("jobs", options.job_workers, clock=clock, rng=self._rng)
        self.db = None
        self.poller = None
        self.consumers = None  # FleetConsumers, with transport_url set
        self._all_consumed_logged = False

    # -- control ------------------------------------------------------------------------------
    def request_stop(self, why: str) -> None:
        """Thread- and signal-safe."""
        if not self._stop.is_set():
            self._stopped_by = why
            self._stop.set()

    def live_hosts(self) -> list[str]:
        with self._lock:
            return list(self._live)

    def explain_down(self, host: str, since: float) -> str | None:
        """Why the live agent `host` may rightly be shown down: one of its beats failed at or
        after `since` (time.monotonic()); None when none did."""
        agent = self._by_host.get(host)
        heartbeat = agent.heartbeat if agent is not None else None
        if heartbeat is None or heartbeat.last_failed_at is None:
            return None
        if heartbeat.last_failed_at < since:
            return None
        return f"its beats failed ({heartbeat.last_error or 'recovered since'})"

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> FleetReport:
        import psutil

        from agent.db import migrate
        from agent.fleet.poller import ServicesPoller
        from agent.fleet.seeding import seed_fleet_instances
        from fakevirt.scenario import generate_scenario

        opts, conf = self.options, self.conf
        process = psutil.Process()
        cpu0 = process.cpu_times()
        workers = opts.beat_workers + opts.job_workers + opts.start_workers
        if conf.transport_url:
            from agent.fleet.consumers import FleetConsumers
            from agent.rpc.transport import parse

            self.consumers = FleetConsumers(parse(conf.transport_url),
                                            min(opts.rpc_connections, opts.count),
                                            opts.rpc_workers)
            workers += opts.rpc_workers
        self.db = self._open(pool_size=workers)
        poll_db = self._open(pool_size=1)
        self.statements.attach(self.db.engine)
        try:
            migrate.ensure_schema(self.db)
            hosts = host_names(opts.host_prefix, opts.count)
            state_root = os.path.join(conf.state_path, "fleet")
            for host in hosts:
                aconf = agent_conf(conf, host)
                scenario = generate_scenario(opts.instances_per_host, hostname=host)
                self.agents.append(SimulatedAgent(aconf, self.db, scenario,
                                                  os.path.join(state_root, host)))
                self._by_host[host] = self.agents[-1]
            with self.statements.labelled("seed"):
                seed_fleet_instances(self.db, [a.scenario for a in self.agents])
            self.poller = ServicesPoller(poll_db, self.live_hosts, conf.service_down_time,
                                         opts.poll_interval or self.interval,
                                         explain=self.explain_down)
            report = self._run_agents(process, cpu0)
            queues = ""
            if self.consumers is not None:
                left, queues = self.consumers.remove_queues(keep=opts.keep)
                report = dataclasses.replace(report, rpc_messages_left=left)
                queues = f"; {queues}"
            if opts.keep:
                return dataclasses.replace(report, cleanup=f"kept (--keep){queues}")
            done = clean_up(self.db, state_root, hosts)
            return dataclasses.replace(report, cleanup=done.describe() + queues)
        finally:
            self.statements.detach()
            for db in (self.db, poll_db):
                db.dispose()

    def _open(self, pool_size: int):
        from agent.db.engine import database_from_conf

        return database_from_conf(self.conf, pool_size=pool_size)

    def _run_agents(self, process, cpu0) -> FleetReport:
        opts = self.options
        ramp = self.interval if opts.ramp is None else opts.ramp
        LOG.info("fleet: starting %s (%s each) over %g s against %s; "
                 "report_interval %g s, service_down_time %g s", plural(opts.count, "agent"),
                 plural(opts.instances_per_host, "instance"), ramp, self.db.url, self.interval,
                 self.conf.service_down_time)
        if self.consumers is not None:
            LOG.info("fleet: each host consumes compute.<host> on %s (%s); %d threads run "
                     "the operations", self.consumers.transport.shown,
                     plural(self.consumers.connections, "shared connection"),
                     opts.rpc_workers)
            self.consumers.start()
        t0 = self._clock()
        statements0 = sum(self.statements.totals().values())
        self.beats.start()
        self.jobs.start()
        self.poller.start()
        start_pool = ThreadPoolExecutor(max_workers=opts.start_workers,
                                        thread_name_prefix="fleet-start")
        starter = threading.Thread(target=self._submit_starts, args=(start_pool, t0, ramp),
                                   name="fleet-starter", daemon=True)
        starter.start()
        steady_at, steady_beats = None, 0
        last_t, last_beats, last_statements = t0, 0, statements0
        end = None if opts.duration is None else t0 + opts.duration
        while True:
            now = self._clock()
            wait = opts.progress_interval if end is None else min(opts.progress_interval,
                                                                  end - now)
            if wait <= 0 or self._stop.wait(wait):
                break
            now = self._clock()
            beats_ok, beats_failed = self.beat_totals()
            if steady_at is None and self.started + self.failed == opts.count:
                steady_at, steady_beats = now, beats_ok
                self.beats.mark_steady()
                with self._lock:
                    last = self._last_started_at or now
                LOG.info("fleet: all %s started in %.1f s (%d failed)",
                         plural(opts.count, "agent"), last - t0, self.failed)
            statements = sum(self.statements.totals().values())
            self._log_progress(now - last_t, beats_ok - last_beats, beats_failed,
                               statements - last_statements)
            last_t, last_beats, last_statements = now, beats_ok, statements
        LOG.info("fleet: stopping (%s)", self._stopped_by)
        self._stop.set()
        starter.join()
        start_pool.shutdown(wait=True, cancel_futures=True)
        self.poller.stop()
        self.beats.stop()
        self.jobs.stop()
        if self.consumers is not None:
            self.consumers.stop()
        t_end = self._clock()
        report = self._report(process, cpu0, t0, t_end, steady_at, steady_beats, statements0)
        for agent in self.agents:
            try:
                agent.stop()
            except Exception as exc:  # noqa: BLE001 - stopping the others matters more
                LOG.warning("fleet: stopping agent %s failed: %s", agent.host, exc)
        return report

    def _submit_starts(self, pool: ThreadPoolExecutor, t0: float, ramp: float) -> None:
        # Start-ups are spread over the ramp, and each heartbeat gets a random phase in
        # [0, interval): N agents started at once would otherwise register, audit and beat
        # in lockstep for ever - a thundering herd of N statements at the same instant every
        # interval, whose queueing shows up as late beats (and, at scale, false downs).
        # Start-ups also yield to heartbeats: at most two per start worker are outstanding,
        # and none is submitted while beats run late (START_YIELD_LATENESS).
        n = len(self.agents)
        outstanding = threading.BoundedSemaphore(2 * self.options.start_workers)
        for index, agent in enumerate(self.agents):
            at = t0 + ramp * index / n
            if self._stop.wait(max(0.0, at - self._clock())):
                return
            # Yield for at most one interval per start-up, so start-up always progresses.
            yield_until = self._clock() + self.interval
            while True:
                if self._stop.is_set():
                    return
                if (self.beats.recent_lateness > START_YIELD_LATENESS
                        and self._clock() < yield_until):
                    self._stop.wait(0.05)
                elif outstanding.acquire(timeout=0.05):
                    break
            try:
                future = pool.submit(self._start_agent, agent)
            except RuntimeError:
                return
            future.add_done_callback(lambda _f: outstanding.release())

    def _start_agent(self, agent: SimulatedAgent) -> None:
        if self._stop.is_set():
            return
        with request_context(), self.statements.labelled("startup"):
            try:
                if not agent.register():
                    raise RuntimeError(agent.heartbeat.last_error or "first beat failed")
                with self._lock:
                    self._live.add(agent.host)
                beat = Task(f"beat {agent.host}", self._beat_func(agent), self.interval)
                agent.tasks.append(beat)
                self.beats.add(beat, self._clock() + self._rng.uniform(0, self.interval))
                agent.start_host_work()
                self._schedule_jobs(agent)
                if self.consumers is not None:  # as the agent: its queue before READY=1
                    self.consumers.serve(agent.host, _Labelled(agent.rpc_dispatcher(),
                                                               self.statements.labelled))
                agent.finish_starting()
            except Exception as exc:  # noqa: BLE001 - one host failing does not stop the fleet
                reason = short_reason(exc)
                LOG.error("fleet: agent %s failed to start: %s", agent.host, reason)
                try:
                    agent.start_failed(reason)
                except Exception as cleanup:  # noqa: BLE001 - already failing; say so, go on
                    LOG.warning("fleet: agent %s: cleaning up the failed start: %s", agent.host,
                                short_reason(cleanup))
                with self._lock:
                    self._live.discard(agent.host)
                    self.failed += 1
                return
        with self._lock:
            self.started += 1
            self._last_started_at = self._clock()

    def _beat_func(self, agent: SimulatedAgent) -> Callable[[], object]:
        heartbeat, labelled = agent.heartbeat, self.statements.labelled

        def beat() -> bool:
            with labelled("beat"):
                return heartbeat.beat()
        return beat

    def _schedule_jobs(self, agent: SimulatedAgent) -> None:
        from agent.periodic import first_run_delay, jitter_for

        for job in agent.host_work.periodic_jobs():
            if job.interval_seconds <= 0:
                continue
            delay = first_run_delay(job, self.conf.periodic_fuzzy_delay, self._rng)
            task = Task(f"{job.name} {agent.host}", self._job_func(job), job.interval_seconds,
                        jitter=jitter_for(job.interval_seconds))
            agent.tasks.append(task)
            self.jobs.add(task, self._clock() + delay)

    def _job_func(self, job) -> Callable[[], None]:
        # One FailureLog per job name for the whole fleet: an outage fails every host's runs,
        # which is one line when it starts and one when it clears, not one per run.
        with self._lock:
            failures = self._job_failures.setdefault(
                job.name, FailureLog(LOG, f"fleet: periodic job {job.name}"))

        def run() -> None:
            with request_context(), self.statements.labelled(job.name):
                try:
                    job.func()
                except Exception as exc:  # noqa: BLE001 - logged and counted; schedule goes on
                    failures.failed(exc)
                    with self._lock:
                        self._job_errors[job.name] = self._job_errors.get(job.name, 0) + 1
                else:
                    failures.succeeded()
                with self._lock:
                    self._job_runs[job.name] = self._job_runs.get(job.name, 0) + 1
        return run

    # -- numbers ------------------------------------------------------------------------------
    def beat_totals(self) -> tuple[int, int]:
        """Beats sent by every agent of the fleet so far: (landed, failed)."""
        ok = failed = 0
        for agent in self.agents:
            heartbeat = agent.heartbeat
            if heartbeat is not None:
                ok += heartbeat.beats_ok
                failed += heartbeat.beats_failed
        return ok, failed

    def _log_progress(self, elapsed: float, beats: int, beats_failed: int,
                      statements: int) -> None:
        p99 = self.beats.lateness.percentile(0.99)
        with self._lock:
            live, errors = len(self._live), sum(self._job_errors.values())
            audits = self._job_runs.get(AUDIT_JOB, 0)
        LOG.info("fleet: %d/%d agents started (%d live, %d failed); %.1f beats/s (target "
                 "%.1f); beat lateness p99 %s, max %s so far; %.0f statements/s; %s; "
                 "errors: %d beats, %d jobs; live agents seen down: %d (and %d while their "
                 "beats failed)",
                 self.started, self.options.count, live, self.failed,
                 beats / elapsed if elapsed > 0 else 0.0, self.options.count / self.interval,
                 _ms(p99), _ms(self.beats.lateness.max if self.beats.lateness.count else None),
                 statements / elapsed if elapsed > 0 else 0.0, plural(audits, "audit"),
                 beats_failed, errors,
                 self.poller.false_downs, self.poller.outage_downs)
        if self.consumers is not None:
            consumed, counts = self.consumers.queues_consumed(), self.consumers.counts()
            LOG.info("fleet: compute RPC: %d/%d queues consumed on %s; %s run (%d failed), "
                     "%d refused or dropped", consumed, self.consumers.hosts,
                     plural(self.consumers.connections, "connection"),
                     plural(counts["requests"], "request"), counts["failed"],
                     counts["refused"] + counts["dropped"])
            if (not self._all_consumed_logged and consumed == self.options.count
                    and self.started == self.options.count):
                self._all_consumed_logged = True
                LOG.info("fleet: all %s consumed", plural(consumed, "compute queue"))

    def _report(self, process, cpu0, t0, t_end, steady_at, steady_beats,
                statements0) -> FleetReport:
        cpu = process.cpu_times()
        duration = max(t_end - t0, 1e-9)
        beats_ok, beats_failed = self.beat_totals()
        if steady_at is not None and t_end > steady_at:
            rate = (beats_ok - steady_beats) / (t_end - steady_at)
            steady = self.beats.steady_lateness
        else:
            rate = beats_ok / duration
            steady = self.beats.lateness
        totals = self.statements.totals()
        run_statements = sum(totals.values()) - statements0
        with self._lock:
            runs, job_errors = dict(self._job_runs), dict(self._job_errors)
            last_started = self._last_started_at
        beat_attempts = beats_ok + beats_failed - self.started - self.failed
        startups = self.started + self.failed
        rpc = self.consumers.counts() if self.consumers is not None else {}
        user, system = cpu.user - cpu0.user, cpu.system - cpu0.system
        overall = self.beats.lateness
        return FleetReport(
            count=self.options.count, instances_per_host=self.options.instances_per_host,
            database=self.db.url, duration_s=round(duration, 3),
            report_interval_s=self.interval,
            service_down_time_s=float(self.conf.service_down_time),
            agents_started=self.started, agents_failed=self.failed,
            startup_s=None if last_started is None or steady_at is None
            else round(last_started - t0, 3),
            beats_ok=beats_ok, beats_failed=beats_failed,
            beats_per_second=round(rate, 2),
            target_beats_per_second=round(self.options.count / self.interval, 2),
            lateness_p50_s=steady.percentile(0.50), lateness_p99_s=steady.percentile(0.99),
            lateness_max_s=steady.max if steady.count else None,
            lateness_all_p99_s=overall.percentile(0.99),
            lateness_all_max_s=overall.max if overall.count else None,
            beat_overruns=self.beats.overruns,
            statements=run_statements,
            statements_per_second=round(run_statements / duration, 1),
            statements_by_activity=dict(sorted(totals.items())),
            statements_per_beat=_ratio(totals.get("beat", 0), beat_attempts),
            statements_per_audit=_ratio(totals.get(AUDIT_JOB, 0), runs.get(AUDIT_JOB, 0)),
            statements_per_startup=_ratio(totals.get("startup", 0), startups),
            audits=runs.get(AUDIT_JOB, 0), audit_errors=job_errors.get(AUDIT_JOB, 0),
            power_syncs=runs.get(SYNC_JOB, 0),
            job_lateness_p99_s=self.jobs.lateness.percentile(0.99),
            cpu_user_s=round(user, 2), cpu_system_s=round(system, 2),
            cpu_percent_of_one_core=round(100.0 * (user + system) / duration, 1),
            rss_mb=round(process.memory_info().rss / 2**20, 1),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            polls=self.poller.polls, poll_errors=self.poller.errors,
            false_downs=self.poller.false_downs, outage_downs=self.poller.outage_downs,
            max_poll_s=self.poller.max_poll_seconds if self.poller.polls else None,
            errors=beats_failed + sum(job_errors.values()) + self.failed + self.poller.errors
            + rpc.get("failed", 0),
            stopped_by=self._stopped_by,
            rpc_connections=self.consumers.connections if self.consumers else 0,
            rpc_queues=self.consumers.queues_consumed() if self.consumers else 0,
            rpc_requests=rpc.get("requests", 0), rpc_failed=rpc.get("failed", 0),
            rpc_refused_or_dropped=rpc.get("refused", 0) + rpc.get("dropped", 0))


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


class _Labelled:
    """A host's RPC dispatcher whose operations' statements count under 'rpc' in the report."""

    def __init__(self, dispatcher, labelled: Callable):
        self._dispatcher, self._labelled = dispatcher, labelled

    def bind(self, request):
        from agent.rpc.dispatcher import Bound

        bound, labelled = self._dispatcher.bind(request), self._labelled

        def run(context, **args):
            with labelled("rpc"):
                return bound.func(context, **args)
        return Bound(bound.method, run, bound.args)
