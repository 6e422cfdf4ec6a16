"""`agent server create|stop|start|reboot|pause|unpause|delete|list|show|events`: nova's
servers from the command line, through agent.control.servers (one transaction per request,
the cast sent once it committed). Each change prints its request id (req-<uuid>): the id in
the compute host's log lines and in `agent server events`.

--wait follows the instance until its host finished the request: one line per task_state seen,
then the result of the host's compute_<method> event; exit status 1 when it failed (or the
instance ended in error), or when --timeout seconds pass first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from agent.commands import arguments
from agent.commands.database import with_database

# Status is nova's server status (ACTIVE, SHUTOFF, REBOOT, ...: agent.vocabulary.server_status,
# as the API and openstackclient show it); the states it is made of follow, as `openstack
# server show` gives them (OS-EXT-STS:vm_state, task_state, power_state).
COLUMNS = ("ID", "Name", "Status", "VM State", "Task State", "Power State", "Host", "Node")
POWER_STATES = {0: "NOSTATE", 1: "Running", 3: "Paused", 4: "Shutdown", 6: "Crashed",
                7: "Suspended"}
ACTIONS = ("stop", "start", "reboot", "pause", "unpause", "delete")


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("server", help="create and operate instances (nova's "
                                                  "servers)", parents=[common])
    actions = parser.add_subparsers(dest="server_command", metavar="ACTION", required=True)

    def waiting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--wait", action="store_true",
                         help="show progress and return when the host is done (exit 1 if "
                              "it failed)")
        sub.add_argument("--timeout", type=arguments.number(0, above=True), default=300.0,
                         metavar="S", help="with --wait: give up after S seconds (default 300)")

    create = actions.add_parser("create", parents=[common], help="create an instance; the "
                                "scheduler chooses its host (or --host, still filtered)",
                                description="Create an instance; the filter scheduler chooses "
                                "its host. --host H considers only host H, which must still "
                                "pass the filters.")
    create.add_argument("--flavor", required=True, type=arguments.text, metavar="F",
                        help="flavor id or name")
    create.add_argument("--name", required=True, type=arguments.text, metavar="N",
                        help="the instance's display name")
    create.add_argument("--image", dest="image_ref", type=arguments.text, metavar="REF",
                        help="image reference recorded with the instance")
    waiting(create)
    create.set_defaults(func=run_create)
    for name in ACTIONS:
        sub = actions.add_parser(name, parents=[common], help=f"{name} an instance")
        sub.add_argument("server", metavar="ID", type=arguments.text, help="uuid or name")
        if name == "reboot":
            sub.add_argument("--hard", action="store_true", help="hard reboot")
        waiting(sub)
        sub.set_defaults(func=run_action, action=name)
    listing = actions.add_parser("list", parents=[common],
                                 help="list instances (--host H: those of host H)",
                                 description="List the live instances; --host H shows only "
                                 "host H's.")
    listing.add_argument("--format", dest="output_format", choices=("table", "json"),
                         default="table", help="output format (default: table)")
    listing.set_defaults(func=run_list)
    for name, func, text in (("show", "run_show", "show an instance"),
                             ("events", "run_events", "what happened to an instance, and "
                                                      "which request did it")):
        sub = actions.add_parser(name, parents=[common], help=text)
        sub.add_argument("server", metavar="ID", type=arguments.text, help="uuid or name")
        sub.add_argument("--format", dest="output_format", choices=("table", "json"),
                         default="table", help="output format (default: table)")
        sub.set_defaults(func=globals()[func])


def as_dict(s) -> dict:
    """An instance as --format json shows it (nova's server fields where they exist):
    `status` nova's server status (e.g. SHUTOFF), then its vm_state (stopped), task_state
    and power_state (by name, e.g. Shutdown)."""
    from agent.vocabulary import server_status

    return {"id": s.uuid, "name": s.display_name,
            "status": server_status(s.vm_state, s.task_state), "vm_state": s.vm_state,
            "task_state": s.task_state,
            "power_state": POWER_STATES.get(s.power_state, s.power_state),
            "host": s.host, "node": s.node, "flavor": json.loads(s.flavor) if s.flavor else None,
            "image": s.image_ref, "user_id": s.user_id, "project_id": s.project_id,
            "created": _iso(s.created_at), "launched_at": _iso(s.launched_at),
            "terminated_at": _iso(s.terminated_at), "deleted": bool(s.deleted)}


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _caster(conf):
    """The RPC client `agent api` uses too (agent.rpc.client.client_for); UsageError when
    there is none."""
    from agent.errors import UsageError
    from agent.rpc.client import client_for

    client = client_for(conf)
    if client is None:
        raise UsageError("no transport_url: set [DEFAULT] transport_url (or --transport-url) "
                         "to the broker the compute hosts consume from (only a SQLite "
                         "database has a default one)")
    return client


def _deliver(conf, outcome) -> None:
    """Send the outcome's cast (after the commit). A broker that cannot be reached is an error
    (exit 1) saying what was saved and that the host was not asked."""
    from agent.control.servers import send
    from agent.display import escape
    from agent.errors import ServiceError
    from agent.rpc.client import BrokerUnreachable

    if outcome.cast is None:
        return
    try:
        with _caster(conf) as caster:
            send(caster, outcome)
    except BrokerUnreachable as exc:
        s = outcome.server
        raise ServiceError(escape(
            f"instance {s.uuid} ({s.display_name}) was saved with task_state {s.task_state}, "
            f"but {outcome.cast.method} could not be sent to host {outcome.cast.host} ({exc}); "
            f"request {outcome.request_id}")) from None


@with_database
def run_create(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.servers import create_server
    from agent.display import escape
    from agent.rpc.transport import url_for

    if not url_for(conf):
        _caster(conf)  # refused before anything is written
    with control_session(db) as session:
        outcome = create_server(session, args.name, args.flavor, image_ref=args.image_ref,
                                host=getattr(args, "host", None),
                                service_down_time=conf.service_down_time)
    print(f"request {outcome.request_id}")
    s = outcome.server
    if outcome.no_valid_host is not None:
        print(escape(f"agent: error: instance {s.uuid} ({s.display_name}) is in error: "
                     f"{outcome.no_valid_host}"), file=sys.stderr)
        return 1
    _deliver(conf, outcome)
    print(escape(f"instance {s.uuid} ({s.display_name}): scheduled to host {s.host} node "
                 f"{s.node}, building"))
    return _wait(args, db, s.uuid, outcome.request_id, "compute_build_and_run_instance")


@with_database
def run_action(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.servers import act
    from agent.display import escape

    action = "reboot-hard" if getattr(args, "hard", False) else args.action
    from agent.rpc.transport import url_for

    if not url_for(conf):
        _caster(conf)
    with control_session(db) as session:
        outcome = act(session, args.server, action, service_down_time=conf.service_down_time)
    print(f"request {outcome.request_id}")
    s = outcome.server
    if outcome.delete_path == "ignored":
        print(escape(f"instance {s.uuid} ({s.display_name}) on host {s.host}: already "
                     "deleting; nothing done"))
        return 0
    if outcome.cast is None:
        where = (f"its host {s.host} is down: its agent destroys the guest when it is back"
                 if s.host else "it had no host")
        print(escape(f"instance {s.uuid} ({s.display_name}): deleted ({where})"))
        return 0
    _deliver(conf, outcome)
    print(escape(f"instance {s.uuid} ({s.display_name}) on host {s.host}: {s.task_state}"))
    return _wait(args, db, s.uuid, outcome.request_id, f"compute_{outcome.cast.method}")


def _wait(args, db, uuid: str, request_id: str, event: str) -> int:
    """With --wait: poll (0.2 s) until the host's `event` of this request finished; one line
    per task_state seen. 0 on Success, 1 on Error or after --timeout."""
    from agent.db import action_queries as actions
    from agent.db import server_queries as q
    from agent.display import escape

    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    seen = object()
    while True:
        with db.sessions() as session:
            rows = [r for r in q.find_servers(session, uuid, deleted=True) if r.uuid == uuid]
            action = actions.get_action(session, uuid, request_id)
        server = rows[0] if rows else None
        state = (server.vm_state, server.task_state) if server else ("gone", None)
        if state != seen:
            print(escape(f"  {state[0]}, task {state[1] or '-'}"), flush=True)
            seen = state
        done = [ev for ev in (action.events if action else ()) if ev.event == event
                and ev.finish_time is not None]
        if done:
            ok = done[-1].result == "Success"
            print(f"{event}: {done[-1].result}")
            return 0 if ok else 1
        if time.monotonic() >= deadline:
            print(f"agent: error: {event} of request {request_id} not finished after "
                  f"{args.timeout:g} s", file=sys.stderr)
            return 1
        time.sleep(0.2)


@with_database
def run_list(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.servers import list_servers
    from agent.display import grid
    from agent.vocabulary import server_status

    with control_session(db) as session:
        records = list_servers(session, getattr(args, "host", None))
    if args.output_format == "json":
        print(json.dumps({"servers": [as_dict(r) for r in records]}, indent=2))
    elif not records:
        print("No instances.")
    else:
        print(grid(COLUMNS, [(r.uuid, r.display_name, server_status(r.vm_state, r.task_state),
                              r.vm_state, r.task_state,
                              POWER_STATES.get(r.power_state, r.power_state), r.host, r.node)
                             for r in records]), end="")
    return 0


@with_database
def run_show(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.servers import find_server
    from agent.display import pairs

    with control_session(db) as session:
        record = find_server(session, args.server)
    shown = as_dict(record)
    if args.output_format == "json":
        print(json.dumps(shown, indent=2))
    else:
        print(pairs(list(shown.items())), end="")
    return 0


@with_database
def run_events(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.servers import server_actions
    from agent.display import grid

    with control_session(db) as session:
        server, listed = server_actions(session, args.server)
    if args.output_format == "json":
        print(json.dumps({"id": server.uuid, "actions": [
            {"action": a.action, "request_id": a.request_id, "user_id": a.user_id,
             "project_id": a.project_id, "start_time": _iso(a.start_time),
             "message": a.message,
             "events": [{"event": ev.event, "host": ev.host, "start_time": _iso(ev.start_time),
                         "finish_time": _iso(ev.finish_time), "result": ev.result,
                         "traceback": ev.traceback} for ev in a.events]}
            for a in listed]}, indent=2))
        return 0
    rows = []
    for a in listed:
        rows.append((a.request_id, a.action, _iso(a.start_time), "", "", ""))
        rows += [("", "", "", ev.event, ev.host, ev.result or "(running)") for ev in a.events]
    print(grid(("Request ID", "Action", "Start Time", "Event", "Host", "Result"), rows,
               default_width=60), end="")
    return 0
