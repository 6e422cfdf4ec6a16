"""`agent flavor list|show|create|delete`: nova's flavors (`openstack flavor ...`).

Each command is one request of agent.control.flavors in one transaction; a refusal is one line
(a bad value exits 2, an unknown or duplicate flavor 1).
"""

from __future__ import annotations

import argparse
import json

from agent.commands import arguments
from agent.commands.database import with_database

# `openstack flavor list` columns.
COLUMNS = ("ID", "Name", "RAM", "Disk", "Ephemeral", "Swap", "VCPUs", "Is Public")


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("flavor", help="list and manage flavors (instance sizes)",
                                   parents=[common])
    actions = parser.add_subparsers(dest="flavor_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="list flavors")
    listing.add_argument("--format", dest="output_format", choices=("table", "json"),
                         default="table", help="output format (default: table)")
    listing.set_defaults(func=run_list)
    show = actions.add_parser("show", parents=[common], help="show one flavor by id or name")
    show.add_argument("flavor", metavar="FLAVOR", type=arguments.text, help="id or name")
    show.add_argument("--format", dest="output_format", choices=("table", "json"),
                      default="table", help="output format (default: table)")
    show.set_defaults(func=run_show)
    create = actions.add_parser("create", parents=[common], help="create a flavor")
    create.add_argument("name", metavar="NAME", help="unique name, 1 to 255 characters")
    create.add_argument("--id", dest="flavorid", metavar="ID",
                        help="unique flavor id (default: a new uuid)")
    create.add_argument("--vcpus", type=int, required=True, metavar="N", help="vCPUs (>= 1)")
    create.add_argument("--ram", dest="memory_mb", type=int, required=True, metavar="MIB",
                        help="memory in MiB (>= 1)")
    create.add_argument("--disk", dest="root_gb", type=int, default=0, metavar="GIB",
                        help="root disk in GiB (default 0)")
    create.add_argument("--ephemeral", dest="ephemeral_gb", type=int, default=0, metavar="GIB",
                        help="ephemeral disk in GiB (default 0)")
    create.add_argument("--swap", type=int, default=0, metavar="MIB",
                        help="swap in MiB (default 0)")
    create.add_argument("--private", action="store_true", help="not public")
    create.add_argument("--description", type=arguments.text, metavar="TEXT")
    create.set_defaults(func=run_create)
    remove = actions.add_parser("delete", parents=[common],
                                help="delete a flavor (its instances keep their copy)")
    remove.add_argument("flavor", metavar="FLAVOR", type=arguments.text, help="id or name")
    remove.set_defaults(func=run_delete)


# The flag (or argument) of 'flavor create' that sets each of nova's flavor fields.
_FLAGS = {"name": "NAME", "flavorid": "--id", "vcpus": "--vcpus", "memory_mb": "--ram",
          "root_gb": "--disk", "ephemeral_gb": "--ephemeral", "swap": "--swap"}


def as_dict(record) -> dict:
    """A flavor as `--format json` and the API show it (nova's field names)."""
    return {"id": record.flavorid, "name": record.name, "ram": record.memory_mb,
            "disk": record.root_gb, "ephemeral": record.ephemeral_gb, "swap": record.swap,
            "vcpus": record.vcpus, "rxtx_factor": record.rxtx_factor,
            "is_public": record.is_public, "disabled": record.disabled,
            "description": record.description}


def _row(record) -> tuple:
    return (record.flavorid, record.name, record.memory_mb, record.root_gb,
            record.ephemeral_gb, record.swap, record.vcpus, record.is_public)


@with_database
def run_list(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.flavors import list_flavors
    from agent.display import grid

    with control_session(db) as session:
        records = list_flavors(session)
    if args.output_format == "json":
        print(json.dumps({"flavors": [as_dict(r) for r in records]}, indent=2))
    elif not records:
        print("No flavors.")
    else:
        print(grid(COLUMNS, [_row(r) for r in records]), end="")
    return 0


def _show(record, output_format: str) -> None:
    from agent.display import pairs

    if output_format == "json":
        print(json.dumps(as_dict(record), indent=2))
    else:
        print(pairs(list(as_dict(record).items())), end="")


@with_database
def run_show(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.flavors import find_flavor

    with control_session(db) as session:
        record = find_flavor(session, args.flavor)
    _show(record, args.output_format)
    return 0


@with_database
def run_create(args, conf, db) -> int:
    from agent.commands.refusals import refusals_in_words
    from agent.control.errors import InvalidValue
    from agent.control.flavors import create_flavor

    sizes = {k: getattr(args, k) for k in ("vcpus", "memory_mb", "root_gb", "ephemeral_gb",
                                           "swap")}
    with refusals_in_words():
        try:
            with db.sessions.begin() as session:
                record = create_flavor(session, args.name, flavorid=args.flavorid,
                                       is_public=not args.private,
                                       description=args.description, **sizes)
        except InvalidValue as exc:  # named as the user wrote it: --ram, not memory_mb
            raise InvalidValue(_FLAGS.get(exc.field, exc.field), exc.value,
                               exc.expected) from None
    _show(record, "table")
    return 0


@with_database
def run_delete(args, conf, db) -> int:
    from agent.commands.refusals import control_session
    from agent.control.flavors import delete_flavor
    from agent.display import escape

    with control_session(db) as session:
        record = delete_flavor(session, args.flavor)
    print(escape(f"flavor {record.name} (id {record.flavorid}) deleted"))
    return 0
