"""The database for the commands that read or change existing rows (`services`, `flavor`,
`server`): opened once per command, errors in one line, always disposed."""

from __future__ import annotations

import functools


def open_database(conf):
    """The configured database, refusing to create a SQLite file: these commands read or
    change existing rows, so a mistyped path is an error, not a new empty database."""
    from agent.db.engine import database_from_conf

    return database_from_conf(conf, create=False)


def with_database(func):
    """Run `func(args, conf, db)` on the opened database. A command's `check_usage(args)` (set
    with `set_defaults`) runs first, so a usage error comes before any connection; an
    unreachable database or a missing schema becomes one DatabaseError line."""
    @functools.wraps(func)
    def wrapper(args, conf) -> int:
        from sqlalchemy.exc import DBAPIError

        from agent.db.migrate import failure_error

        check_usage = getattr(args, "check_usage", None)
        if check_usage is not None:
            check_usage(args)
        db = open_database(conf)
        try:
            return func(args, conf, db)
        except DBAPIError as exc:
            raise failure_error(db, exc) from None
        finally:
            db.dispose()
    return wrapper
