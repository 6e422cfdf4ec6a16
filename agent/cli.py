"""The `agent` command line.

`agent` alone runs the daemon; `agent --once` runs one start-up pass and prints the inventory;
subcommands (`db`, `services`, `config`, ...) live in `agent.commands`, one module each, with a
`register(subparsers, common)` that adds its parser and sets `func(args, conf) -> int`.

Errors from the library (`AgentError`) become one line on stderr and a non-zero exit status;
usage errors and bad values (argparse's, `ConfigError`, `UsageError`) exit with status 2, also
with one line; any other exception a traceback and exit status 1. All with passwords removed
(`agent.redact`).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from agent import __version__
from agent.cli_help import AgentArgumentParser
from agent.commands import COMMAND_MODULES
from agent.errors import AgentError
from agent.redact import redact_text

# Command-line options that override a configuration key: dest -> (section, name).
OVERRIDES = {
    "host": ("DEFAULT", "host"),
    "driver": ("DEFAULT", "compute_driver"),
    "db": ("database", "connection"),
    "state_path": ("DEFAULT", "state_path"),
    "connection_uri": ("libvirt", "connection_uri"),
    "scenario": ("fakevirt", "scenario"),
    "transport_url": ("DEFAULT", "transport_url"),
}


def common_options() -> argparse.ArgumentParser:
    """Options accepted before or after any subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="configuration file (default: /etc/compute-agent/agent.conf if it "
                            "exists, else built-in defaults)")
    group.add_argument("--host", metavar="NAME", default=argparse.SUPPRESS,
                       help="this host's name in the service registry (default: hostname)")
    group.add_argument("--driver", choices=("fake", "libvirt"), default=argparse.SUPPRESS,
                       help="virt driver (config: compute_driver)")
    group.add_argument("--connection-uri", metavar="URI", default=argparse.SUPPRESS,
                       help="libvirt connection URI, e.g. test:///default")
    group.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                       help="database URL (config: [database] connection)")
    group.add_argument("--transport-url", metavar="URL", default=argparse.SUPPRESS,
                       help="messaging transport of the compute RPC, "
                            "rabbit://USER:PASS@HOST:5672/VHOST (config: transport_url)")
    group.add_argument("--state-path", metavar="DIR", default=argparse.SUPPRESS,
                       help="state directory (embedded SQLite database, node identity)")
    group.add_argument("--scenario", metavar="FILE", default=argparse.SUPPRESS,
                       help="fakevirt scenario file: the fake host and its guests "
                            "(config: [fakevirt] scenario)")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="log at DEBUG level")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = AgentArgumentParser(
        prog="agent", parents=[common],
        description="compute-agent: registers this hypervisor host in the shared database, "
                    "heartbeats, initializes its instances and audits its resources. Without a "
                    "command it runs as a daemon until SIGTERM or SIGINT.",
        epilog="Run 'agent COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"compute-agent {__version__}")
    parser.add_argument("--once", action="store_true",
                        help="run one start-up pass (register, beat, init_host, one audit), "
                             "print the host's inventory and exit")
    parser.add_argument("--format", choices=("table", "json"),
                        help="inventory format with --once (default: table)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --once: report every destroy, state change and power "
                             "action start-up would take, and take none; nothing is written "
                             "(no registration, no beat, no node row, no compute_id)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers, common)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict:
    from agent.config import RawValue

    overrides = {key: RawValue(str(getattr(args, dest)), "--" + dest.replace("_", "-"))
                 for dest, key in OVERRIDES.items() if getattr(args, dest, None) is not None}
    if getattr(args, "debug", False):
        overrides[("DEFAULT", "debug")] = RawValue("true", "--debug")
    return overrides


def check_combination(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that are only read together with another: refused alone rather than ignored."""
    if args.format is not None and not args.once:
        where = ("; for 'services list', put --format after 'list'"
                 if getattr(args, "command", None) == "services" else "")
        parser.error(f"--format applies only to --once{where}")
    args.format = args.format or "table"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: SystemExit(2), one line (cli_help)
    check_combination(parser, args)
    secrets: tuple[str, ...] = ()
    try:
        from agent.config import load_config

        conf = load_config(getattr(args, "config", None), overrides_from_args(args))
        secrets = conf.secrets()
        func = getattr(args, "func", None)
        if func is None:
            from agent.commands import daemon

            func = daemon.run
        return func(args, conf)
    except AgentError as exc:
        print(redact_text(f"agent: error: {exc}", secrets), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - a bug: show it, without the passwords it may quote
        print(redact_text(traceback.format_exc(), secrets), end="", file=sys.stderr)
        return 1
