"""`agent db sync` (create or upgrade the schema) and `agent db seed FILE`."""

from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("db", help="database schema and data", parents=[common],
                                   description="Database schema and data.")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    sync = sub.add_parser("sync", parents=[common],
                          help="create or upgrade the schema to the latest version (safe to run "
                               "again)")
    sync.set_defaults(func=run_sync)
    seed = sub.add_parser("seed", parents=[common],
                          help="write a fakevirt scenario file's instances and migrations into "
                               "the database (one transaction)",
                          description="Write the [[instances]] and [[migrations]] of a scenario "
                                      "file (docs/scenario-format.md) into the database, all or "
                                      "nothing. Instances without a host get the scenario's "
                                      "hostname, else this agent's host.")
    seed.add_argument("file", metavar="FILE", help="scenario file (TOML)")
    seed.add_argument("--replace", action="store_true",
                      help="overwrite rows whose uuids are already present (default: refuse)")
    seed.set_defaults(func=run_seed)


def sync_summary(url: str, before: str | None, head: str) -> str:
    """The line `agent db sync` prints."""
    if before == head:
        return f"database {url}: schema at revision {head} (already up to date)"
    return f"database {url}: schema at revision {head} (upgraded from {before or 'empty'})"


def run_sync(args, conf) -> int:
    from agent.db import migrate
    from agent.db.engine import database_from_conf

    db = database_from_conf(conf)
    try:
        before = migrate.upgrade(db)
        print(sync_summary(db.url, before, migrate.HEAD))
    finally:
        db.dispose()
    return 0


def run_seed(args, conf) -> int:
    from agent.db import migrate
    from agent.db.engine import database_from_conf
    from fakevirt.scenario import load_scenario
    from fakevirt.seed import seed_database

    scenario = load_scenario(args.file)
    db = database_from_conf(conf)
    try:
        migrate.ensure_schema(db)
        result = seed_database(db, scenario, default_host=conf.host, replace=args.replace)
    finally:
        db.dispose()
    replaced = f", replacing {result.replaced} existing rows" if result.replaced else ""
    print(f"seeded {result.instances} instances and {result.migrations} migrations from "
          f"{args.file} into {db.url}{replaced}")
    return 0
