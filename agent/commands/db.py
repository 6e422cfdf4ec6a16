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


# A scenario file this large takes seconds to read: say so before, and how long after.
LARGE_SCENARIO_BYTES = 1_000_000


def sync_summary(url: str, before: str | None, head: str) -> str:
    """The line `agent db sync` prints."""
    if before == head:
        return f"database {url}: schema at revision {head} (already up to date)"
    return f"database {url}: schema at revision {head} (upgraded from {before or 'empty'})"


def run_sync(args, conf) -> int:
    from agent.db import migrate
    from agent.db.engine import OPERATOR_STATEMENT_TIMEOUT_SECONDS, database_from_conf

    db = database_from_conf(conf, statement_timeout=OPERATOR_STATEMENT_TIMEOUT_SECONDS)
    try:
        before = migrate.upgrade(db)
        print(sync_summary(db.url, before, migrate.HEAD))
    finally:
        db.dispose()
    return 0


def run_seed(args, conf) -> int:
    import logging
    import os
    import time

    from agent.db import migrate
    from agent.db.engine import OPERATOR_STATEMENT_TIMEOUT_SECONDS, database_from_conf
    from agent.display import plural
    from agent.log import setup_logging
    from fakevirt.scenario import load_scenario
    from fakevirt.seed import seed_database

    setup_logging(conf.debug, conf.log_file, conf.secrets(),
                  conf.where("DEFAULT", "log_file"))
    log = logging.getLogger(__name__)
    size = os.path.getsize(args.file) if os.path.isfile(args.file) else 0
    if size >= LARGE_SCENARIO_BYTES:
        log.info("reading scenario %s (%.1f MB)", args.file, size / 1e6)
    started = time.monotonic()
    scenario = load_scenario(args.file)
    if size >= LARGE_SCENARIO_BYTES:
        log.info("scenario %s: %s, %s and %s, read and checked in %.1f s", args.file,
                 plural(len(scenario.domains), "domain"),
                 plural(len(scenario.instances), "instance"),
                 plural(len(scenario.migrations), "migration"), time.monotonic() - started)
    db = database_from_conf(conf, statement_timeout=OPERATOR_STATEMENT_TIMEOUT_SECONDS)
    try:
        migrate.ensure_schema(db)
        result = seed_database(db, scenario, default_host=conf.host, replace=args.replace)
    finally:
        db.dispose()
    replaced = (f", replacing {plural(result.replaced, 'existing row')}" if result.replaced
                else "")
    print(f"seeded {plural(result.instances, 'instance')} and "
          f"{plural(result.migrations, 'migration')} from {args.file} into {db.url}{replaced} "
          f"in {result.seconds:.1f} s")
    return 0
