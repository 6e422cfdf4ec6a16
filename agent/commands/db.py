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


def run_sync(args, conf) -> int:
    raise NotImplementedError
