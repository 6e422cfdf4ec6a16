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
