"""`agent services ...`: the operator's view of the service registry (nova's os-services).

`list` says for every service whether it is up and, when it is down, why; the other actions
change one service and print one line saying what changed.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.commands import arguments
from agent.commands.database import with_database
from agent.display import escape
from agent.vocabulary import COMPUTE_BINARY, service_zone

# nova's `openstack compute service list` columns (ID, Binary, Host, Zone, Status, State,
# Updated At, Disabled Reason, Forced Down), with this agent's own after them.
COLUMNS = ("ID", "Binary", "Host", "Zone", "Status", "State", "Updated At", "Last Seen Up",
           "Disabled Reason", "Forced Down", "Clock Offset", "Down Reason")
# Table widths of the free-text columns (longer values end in '...'; --format json keeps them).
COLUMN_WIDTHS = {"Disabled Reason": 32, "Down Reason": 64}
SQLITE_CLOCK_NOTE = (
    "note: SQLite has no database server clock: each process stamps and judges beats with its\n"
    "own clock, so a process whose clock is off can be shown down, and the clock offset cannot\n"
    "be measured (n/a). Hosts that share a database should use PostgreSQL or MariaDB.")


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("services", help="list and manage registered services",
                                   parents=[common])
    actions = parser.add_subparsers(dest="services_command", metavar="ACTION", required=True)

    # --host comes from the common options (it names the host whose service is meant).
    listing = actions.add_parser("list", parents=[common],
                                 help="list services, up or down, and why a service is down",
                                 description="List services; --host H shows only host H's.")
    listing.add_argument("--binary", dest="service_binary", metavar="B", type=arguments.text,
                         help="only services of this binary")
    listing.add_argument("--format", dest="output_format", choices=("table", "json"),
                         default="table", help="output format (default: table)")
    listing.set_defaults(func=run_list)

    def target(name: str, help_text: str, func) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[common], help=help_text,
                                 description=f"{help_text[0].upper()}{help_text[1:]}. "
                                             "--host H (required) names its host.",
                                 required_options={"--host": "the service's host"})
        sub.add_argument("--binary", dest="service_binary", metavar="B",
                         default=COMPUTE_BINARY, type=arguments.text,
                         help=f"the service's binary (default: {COMPUTE_BINARY})")
        sub.set_defaults(func=func, check_usage=_required_host)
        return sub

    target("enable", "enable a service (new instances may be scheduled to it)", run_enable)
    disable = target("disable", "disable a service (no new instances are scheduled to it)",
                     run_disable)
    disable.add_argument("--reason", metavar="TEXT", type=arguments.disabled_reason,
                         help="why it is disabled (at most 255 characters), shown in the list")
    force = target("force-down", "mark a service down at once (e.g. before evacuating its "
                                 "instances); --unset lifts it", run_force_down)
    force.add_argument("--unset", action="store_true",
                       help="lift forced down (refused while evacuations from the host are "
                            "in status 'done')")
    target("delete", "delete a service that has no instances and no migrations in progress",
           run_delete)


def _target_host(args) -> str | None:
    """The --host given on the command line (not the configured host: an operator names the
    service explicitly)."""
    return getattr(args, "host", None)


def _required_host(args) -> str:
    host = _target_host(args)
    if not host:
        from agent.errors import UsageError

        raise UsageError(f"services {args.services_command}: --host is required (the host "
                         "whose service to change)")
    return host


@with_database
def run_list(args, conf, db) -> int:
    from agent.db.service_queries import list_services
    from agent.liveness import clock_warning

    with db.sessions() as session:
        db_now, rows = list_services(session, _target_host(args), args.service_binary)
    server_clock = db.engine.dialect.name != "sqlite"
    entries = [_entry(row, db_now, conf.service_down_time, server_clock) for row in rows]
    if args.output_format == "json":
        print(json.dumps({"services": entries, "db_now": _iso(db_now),
                          "service_down_time": conf.service_down_time,
                          "clock_source": ("database server" if server_clock
                                           else "each process's own clock (SQLite)")},
                         indent=2))
    else:
        print(format_table(entries, server_clock), end="")
        if entries and not server_clock:
            print(SQLITE_CLOCK_NOTE)
    for entry in entries:
        warning = clock_warning(entry["host"], entry["clock_offset_seconds"])
        if warning:
            print(f"warning: {escape(warning)}", file=sys.stderr)
    return 0


def _entry(row, db_now, service_down_time, server_clock: bool = True) -> dict:
    """One service as `list --format json` shows it; the clock offset is None (n/a) without a
    database server clock."""
    from agent.liveness import state_of

    state = state_of(row, db_now, service_down_time)
    offset = state.clock_offset_seconds if server_clock else None
    return {
        "id": row.id, "uuid": row.uuid, "binary": row.binary, "host": row.host,
        "zone": service_zone(row.binary),
        "topic": row.topic, "status": "disabled" if row.disabled else "enabled",
        "state": "up" if state.up else "down", "updated_at": _iso(row.updated_at),
        "last_seen_up": _iso(row.last_seen_up), "disabled_reason": row.disabled_reason,
        "forced_down": row.forced_down, "report_count": row.report_count,
        "clock_offset_seconds": round(offset, 3) if offset is not None else None,
        "age_seconds": (round(state.age_seconds, 3) if state.age_seconds is not None
                        else None),
        "down_reason": state.reason,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def format_table(entries: list[dict], server_clock: bool = True) -> str:
    """The `services list` table for entries of `_entry`: one line per service whatever its
    values hold (control characters escaped, long text cut with '...'). The clock offset reads
    n/a without a database server clock, '-' before the first beat."""
    from agent.display import grid

    if not entries:
        return "No services registered (that match).\n"
    rows = []
    for e in entries:
        offset = e["clock_offset_seconds"]
        rows.append((e["id"], e["binary"], e["host"], e["zone"], e["status"], e["state"],
                     _short(e["updated_at"]), _short(e["last_seen_up"]), e["disabled_reason"],
                     "yes" if e["forced_down"] else "no",
                     _offset_text(offset, server_clock),
                     e["down_reason"]))
    return grid(COLUMNS, rows, widths=COLUMN_WIDTHS)


def _offset_text(offset: float | None, server_clock: bool) -> str:
    if offset is None:
        return "-" if server_clock else "n/a"
    return f"{round(offset, 1) + 0.0:+.1f} s"


def _short(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


def _describe(row) -> str:
    return escape(f"service {row.binary} on host {row.host} (id {row.id})")


@with_database
def run_enable(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.services import set_disabled

    with control_session(db) as session:
        before, after = set_disabled(session, _required_host(args), args.service_binary, False)
    if before.disabled:
        was = (f" (was disabled: {escape(before.disabled_reason)})" if before.disabled_reason
               else "")
        print(f"{_describe(after)}: enabled{was}")
    else:
        print(f"{_describe(after)}: already enabled, nothing changed")
    return 0


@with_database
def run_disable(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.services import set_disabled

    with control_session(db) as session:
        before, after = set_disabled(session, _required_host(args), args.service_binary, True,
                                     args.reason)
    if before.disabled:
        now = repr(after.disabled_reason) if after.disabled_reason else "none"  # repr escapes
        print(f"{_describe(after)}: already disabled; reason changed from "
              f"{before.disabled_reason!r} to {now}")
    else:
        reason = f" (reason: {escape(after.disabled_reason)})" if after.disabled_reason else ""
        print(f"{_describe(after)}: disabled{reason}")
    return 0


@with_database
def run_force_down(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.services import set_forced_down

    with control_session(db) as session:
        before, after = set_forced_down(session, _required_host(args), args.service_binary,
                                        not args.unset)
    if before.forced_down == after.forced_down:
        print(f"{_describe(after)}: forced_down already {'set' if after.forced_down else 'unset'}"
              ", nothing changed")
    elif after.forced_down:
        print(f"{_describe(after)}: forced down (shown down until 'force-down --unset')")
    else:
        print(f"{_describe(after)}: forced_down unset (up again once it reports)")
    return 0


@with_database
def run_delete(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.services import delete_service

    with control_session(db) as session:
        row = delete_service(session, _required_host(args), args.service_binary)
    print(f"{_describe(row)}: deleted (with the host's compute nodes); a restarted agent on "
          "the host registers again")
    return 0
