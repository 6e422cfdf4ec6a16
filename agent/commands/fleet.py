"""`agent fleet`: N simulated compute agents in one process against one database, with a
progress line every few seconds and a report at the end (table; JSON with --report FILE). With
transport_url set, each also consumes its compute.<host> queue on one of --rpc-connections
shared broker connections (agent.fleet.consumers).

Ctrl-C (SIGINT) or SIGTERM stops it cleanly with the report so far. Exit status 1 when the
service list showed a live, beating agent down (a false down); downs explained by the agents'
own failed beats (a database outage) are reported apart and do not fail the run. At the end the
simulated hosts' rows and state directories are removed unless --keep is given.
"""

from __future__ import annotations

import argparse
import logging
import sys

from agent import values
from agent.commands import arguments

LOG = logging.getLogger(__name__)
# Bounds of the command-line values: far above what one process can simulate, low enough that
# a typo (an extra zero or three) is refused instead of starting to allocate.
MAX_COUNT = 1_000_000
MAX_WORKERS = 1_000

# The single agent's modules: at INFO they log every registration, init_host and audit of every
# simulated host. Held at --agent-log-level (WARNING by default) so the fleet's own progress
# stays readable; warnings and errors (a lost database, a failed audit) still show.
AGENT_LOGGERS = ("agent.compute", "agent.registry", "agent.heartbeat", "agent.virt",
                 "agent.network", "agent.periodic", "agent.rpc", "fakevirt")


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "fleet", parents=[common],
        help="run N simulated compute agents (fakevirt) in one process against one database",
        description="Run N simulated compute agents in this process, each with its own host "
                    "name, service row, fakevirt hypervisor with M instances, heartbeat, "
                    "start-up and periodic audit, against the configured database (--db). "
                    "report_interval and service_down_time come from the configuration. "
                    "Prints progress every few seconds and a report at the end; Ctrl-C stops "
                    "it with the report so far. Exit status 1 when a live agent whose beats "
                    "did not fail was shown down. With transport_url set (--transport-url "
                    "rabbit://...; not the SQLite broker file), each simulated host also "
                    "declares and consumes its own compute.<host> queue on exchange nova, as "
                    "the agent does, and performs the instance operations cast to it (nova's "
                    "compute RPC) with the agent's own code on its fakevirt hypervisor: a load "
                    "test of the broker with N computes. The queues are consumed over "
                    "--rpc-connections shared connections, not one per host (see "
                    "--rpc-connections), and deleted at the end unless --keep.")
    parser.add_argument("--count", type=arguments.integer(1, MAX_COUNT), required=True,
                        metavar="N", help="number of simulated agents")
    parser.add_argument("--instances-per-host", type=arguments.integer(0, MAX_COUNT), default=2,
                        metavar="M", help="instances on each simulated host (default: 2)")
    parser.add_argument("--duration", type=arguments.number(0), metavar="S",
                        help="seconds to run after the first agent starts (default: until "
                             "Ctrl-C)")
    parser.add_argument("--report", type=arguments.writable_file, metavar="FILE",
                        help="also write the report as JSON here")
    parser.add_argument("--ramp", type=arguments.number(0), metavar="S",
                        help="seconds over which the agents are started (default: one "
                             "report_interval)")
    parser.add_argument("--host-prefix", type=arguments.host_prefix, default="fleet-",
                        metavar="P", help="host names are P00001, P00002, ... (default: fleet-)")
    parser.add_argument("--beat-workers", type=arguments.integer(1, MAX_WORKERS), default=8,
                        metavar="W", help="threads sending heartbeats (default: 8)")
    parser.add_argument("--job-workers", type=arguments.integer(1, MAX_WORKERS), default=2,
                        metavar="W", help="threads running periodic audits (default: 2)")
    parser.add_argument("--start-workers", type=arguments.integer(1, MAX_WORKERS), default=2,
                        metavar="W", help="threads running agent start-ups (default: 2)")
    parser.add_argument("--poll-interval", type=arguments.number(0, above=True), metavar="S",
                        help="seconds between 'services list' polls (default: report_interval)")
    parser.add_argument("--progress-interval", type=arguments.number(0, above=True),
                        default=5.0, metavar="S",
                        help="seconds between progress lines (default: 5)")
    parser.add_argument("--seed", type=arguments.integer(0, values.BIGINT_MAX), metavar="N",
                        help="random seed of the start-up and heartbeat phases")
    parser.add_argument("--keep", action="store_true",
                        help="keep the simulated hosts' service, compute node and instance "
                             "rows, their state directories and their compute queues "
                             "(default: removed at the end)")
    parser.add_argument("--rpc-connections", type=arguments.integer(1, MAX_COUNT), default=4,
                        metavar="C",
                        help="with transport_url: broker connections that consume the "
                             "simulated hosts' compute.<host> queues, each host's queue on one "
                             "of them, one consumer thread each (default: 4; at most --count). "
                             "A real fleet has one connection per agent: the broker's queues, "
                             "consumers and messages are those of N agents whatever C is, its "
                             "per-connection cost (memory, sockets, heartbeats) only with "
                             "C = N, which costs this process a thread per host")
    parser.add_argument("--rpc-workers", type=arguments.integer(1, MAX_WORKERS), default=4,
                        metavar="W", help="with transport_url: threads running the instance "
                                          "operations cast to the hosts, shared by every RPC "
                                          "connection (default: 4)")
    parser.add_argument("--agent-log-level", default="WARNING",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level of the simulated agents' own modules (default: "
                             "WARNING)")
    parser.set_defaults(func=run)


def options_from_args(args):
    from agent.errors import UsageError
    from agent.fleet.runner import FleetOptions
    from agent.fleet.simulated import host_names

    options = FleetOptions(count=args.count, instances_per_host=args.instances_per_host,
                           duration=args.duration, ramp=args.ramp, host_prefix=args.host_prefix,
                           beat_workers=args.beat_workers, job_workers=args.job_workers,
                           start_workers=args.start_workers, poll_interval=args.poll_interval,
                           progress_interval=args.progress_interval, seed=args.seed,
                           keep=args.keep, rpc_connections=args.rpc_connections,
                           rpc_workers=args.rpc_workers)
    options.check()
    last = host_names(args.host_prefix, args.count)[-1]
    try:
        values.hostname(last)
    except values.BadValue as exc:
        raise UsageError(f"fleet: --host-prefix {values.shown(args.host_prefix)} with --count "
                         f"{args.count} makes host names like {values.shown(last)}: {exc}"
                         ) from None
    return options


def run(args, conf) -> int:
    from agent.fleet.runner import FleetRunner
    from agent.log import setup_logging
    from agent.service import stop_on_signals

    options = options_from_args(args)
    setup_logging(conf.debug, conf.log_file, conf.secrets(),
                  conf.where("DEFAULT", "log_file"))
    for name in AGENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if conf.debug else args.agent_log_level)
    for warning in conf.warnings:
        LOG.warning("%s", warning)
    runner = FleetRunner(conf, options)
    with stop_on_signals(runner.request_stop):
        report = runner.run()
    sys.stdout.write(report.format_table())
    sys.stdout.flush()
    if args.report:
        _write_report(args.report, report.to_json())
        LOG.info("fleet: report written to %s", args.report)
    if report.exit_status:
        from agent.display import plural

        LOG.error("fleet: the service list showed live, beating agents down %s (false "
                  "downs): failing the run", plural(report.false_downs, "time"))
    return report.exit_status


def _write_report(path: str, text: str) -> None:
    from agent.errors import AgentError
    from agent.files import write_atomically

    try:
        write_atomically(path, text)
    except OSError as exc:
        raise AgentError(f"--report {path}: cannot write the report: {exc.strerror}") from None
