"""`agent evacuate --host SRC --to DST [--dry-run]`: move every instance of a down (or forced
down) host to another host, with one 'evacuation' migration record per instance, in one
transaction. The source's agent destroys its local copies when it starts again."""

from __future__ import annotations

import argparse

from agent.commands import arguments
from agent.vocabulary import COMPUTE_BINARY


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "evacuate", parents=[common],
        help="move the instances of a down host to another host (evacuation)",
        description="Evacuate host SRC (--host, required) to host DST (--to): refused unless "
                    "SRC's service is down or forced down and DST's is up and enabled. Writes "
                    "one 'evacuation' migration (status 'done') per instance and moves the "
                    "instances to DST, all in one transaction. When SRC's agent starts again "
                    "it destroys its copies of the guests and completes the migrations.",
        required_options={"--host": "the source host (SRC), whose service is down"})
    parser.add_argument("--to", dest="dest_host", required=True, metavar="DST",
                        type=arguments.hostname,
                        help="the destination host")
    parser.add_argument("--binary", dest="service_binary", default=COMPUTE_BINARY, metavar="B",
                        type=arguments.text,
                        help=f"the services' binary (default: {COMPUTE_BINARY})")
    parser.add_argument("--dry-run", action="store_true", dest="evacuate_dry_run",
                        help="check and show what would be done; write nothing")
    parser.set_defaults(func=run)


def run(args, conf) -> int:
    from sqlalchemy.exc import DBAPIError

    from agent.commands.refusals import refusals_in_words
    from agent.config import short_reason
    from agent.control.errors import OutcomeUnknown
    from agent.control.evacuation import commit_evacuation, evacuate_host
    from agent.db.engine import database_from_conf
    from agent.db.migrate import failure_error
    from agent.display import plural
    from agent.errors import DatabaseError, UsageError
    from agent.rpc.transport import url_for

    source = getattr(args, "host", None)
    if not source:
        raise UsageError("evacuate: --host is required (the host whose instances to move)")
    if source == args.dest_host:
        raise UsageError(f"evacuate: --to {source}: cannot evacuate host {source} to itself; "
                         "expected another host than --host")
    dry_run = args.evacuate_dry_run or getattr(args, "dry_run", False)
    db = database_from_conf(conf, create=False)  # a mistyped SQLite path is not created
    session = db.sessions()  # this command's one transaction
    try:
        with refusals_in_words():
            result = evacuate_host(session, source, args.dest_host,
                                   service_down_time=conf.service_down_time,
                                   binary=args.service_binary, dry_run=dry_run,
                                   rebuild=bool(url_for(conf)))
        commit_evacuation(session, result)
    except OutcomeUnknown as exc:
        raise DatabaseError(
            f"database {db.url}: {short_reason(exc.__cause__)} while committing the evacuation "
            f"of {plural(exc.count, 'instance')} from host {exc.source_host} to host "
            f"{exc.dest_host}: "
            "the outcome is unknown (all of them may have moved, or none); check with "
            f"'agent evacuate --host {exc.source_host} --to {exc.dest_host} --dry-run' (it "
            f"lists the instances still on {exc.source_host}; none listed: the evacuation was "
            "made) and run the evacuation again if some remain") from None
    except DBAPIError as exc:
        raise failure_error(db, exc, suffix=" (nothing was changed)") from None
    finally:
        session.close()
        db.dispose()
    print(render(result), end="")
    if result.casts:
        _cast_rebuilds(conf, result)
    elif result.instances and not result.dry_run:
        print("no transport_url (and a database server): the agent on "
              f"{result.dest_host} is not asked to spawn the guests (its power sync finds "
              "them missing)")
    return 0


def _cast_rebuilds(conf, result) -> None:
    """Ask the destination to spawn the moved guests (after the commit), as nova's evacuate
    ends; a broker that cannot be reached is an error after the records were moved."""
    from agent.control.casts import send
    from agent.display import escape, plural
    from agent.errors import ServiceError
    from agent.rpc.client import BrokerUnreachable, client_for

    try:
        with client_for(conf) as client:
            send(client, result.casts)
    except BrokerUnreachable as exc:
        raise ServiceError(escape(
            f"the instances were moved to host {result.dest_host}, but rebuild_instance could "
            f"not be sent ({exc}); request {result.request_id}")) from None
    print(escape(f"request {result.request_id}: rebuild_instance(recreate=True) cast to host "
                 f"{result.dest_host} for {plural(len(result.casts), 'instance')}"))


def render(result) -> str:
    from agent.display import escape, grid, plural

    verb = "would evacuate" if result.dry_run else "evacuated"
    count = plural(len(result.instances), "instance")
    lines = [escape(f"{verb} {count} from host {result.source_host} ({result.source_state})"
                    f" to host {result.dest_host} (node {result.dest_node})")
             + (" [dry run: nothing written]" if result.dry_run else "")]
    if result.instances:
        header = ("Instance UUID", "Name", "Source Node", "Migration")
        rows = [(i.uuid, i.name, i.source_node,
                 "-" if i.migration_id is None else f"{i.migration_id} (done)")
                for i in result.instances]
        lines.append(grid(header, rows).rstrip("\n"))
    if result.not_evacuable:
        lines.append(escape(f"{plural(len(result.not_evacuable), 'instance')} not evacuable "
                            "(only active, stopped and error instances are), left on host "
                            f"{result.source_host}:"))
        lines.append(grid(("Instance UUID", "Name", "VM State"),
                          [(i.uuid, i.name, i.vm_state or "-") for i in result.not_evacuable]
                          ).rstrip("\n"))
    for uuid, what in result.changed:
        lines.append(escape(f"instance {uuid} changed while evacuating ({what}): not moved"))
    if result.instances and not result.dry_run:
        lines.append(escape(f"start the agent on {result.source_host} to destroy its "
                            f"copies; 'agent services force-down --unset --host "
                            f"{result.source_host}' is refused until then"))
    return "\n".join(lines) + "\n"

