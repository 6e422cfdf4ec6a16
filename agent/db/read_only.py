"""A database that refuses writes: what a dry run reads through.

Two layers, so that a write path the caller forgot fails loudly instead of changing anything:

- every statement is checked before it reaches the driver (`is_read`): only reads pass, and
  anything else raises ReadOnlyViolation naming the statement;
- the connection itself is read-only on the server: SQLite is opened without the right to
  create the file, with ``PRAGMA query_only``; PostgreSQL sessions get
  ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``, MariaDB/MySQL sessions
  ``SET SESSION TRANSACTION READ ONLY`` (each server then refuses a write with its own error).

Nothing is created either: no directory, no database file, no WAL switch of the file's header.

Sessions of such a database say so (`refuses_writes`): the write primitives (the conditional
save of instance and migration rows, the compute-node saves) then decide as they would, log what
they would write and write nothing, so the code that calls them is the same in a dry run (a
recording driver and firewall, and this database) as in a real start-up.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from agent.errors import DatabaseError

# The first keyword of a statement that only reads. PRAGMA and SET pass only in their reading
# or session-local forms (see is_read).
_READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE", "PRAGMA", "SET"})

_SESSION_READ_ONLY = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}


# The key, in a session's `info`, of a read-only database's sessions (see make_database).
SESSION_INFO_KEY = "refuses_writes"


def refuses_writes(session) -> bool:
    """Whether `session` belongs to a read-only database: the write primitives write nothing
    through it and say what they would have written."""
    return bool(session.info.get(SESSION_INFO_KEY))


class ReadOnlyViolation(DatabaseError):
    """A statement that would write was sent through a read-only database."""


def is_read(statement: str) -> bool:
    """True when `statement` (SQL text) only reads: SELECT, WITH, SHOW, EXPLAIN, DESCRIBE, a
    PRAGMA without '=' (a query, not a setting) and a SET of a session variable (not GLOBAL or
    PERSIST). Everything else, including an empty or unrecognised statement, counts as a
    write."""
    words = statement.lstrip(" \t\r\n(").split(None, 2)
    if not words:
        return False
    first = words[0].upper()
    if first not in _READ_KEYWORDS:
        return False
    if first == "PRAGMA":
        return "=" not in statement
    if first == "SET":
        second = words[1].upper() if len(words) > 1 else ""
        return second not in ("GLOBAL", "PERSIST", "PERSIST_ONLY", "@@GLOBAL")
    return True


def refuse_writes(url: str):
    """A `before_cursor_execute` listener raising ReadOnlyViolation for any statement that is
    not a read (`url`, already masked, names the database in the error)."""

    def listener(_conn, _cursor, statement, _parameters, _context, _executemany):
        if not is_read(statement):
            shown = " ".join(statement.split())
            raise ReadOnlyViolation(
                f"database {url} is open read-only: refused to run "
                f"{shown[:120]}{'...' if len(shown) > 120 else ''}")

    return listener


def session_read_only(backend: str):
    """A pool `connect` listener that makes each new server connection read-only, or None for
    SQLite (its connections are opened read-only by `sqlite_creator`)."""
    statement = _SESSION_READ_ONLY.get(backend)
    if statement is None:
        return None

    def listener(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        dbapi_connection.commit()  # a SET inside a rolled-back transaction would be undone

    return listener


def sqlite_creator(path: str, url: str, busy_timeout_ms: int):
    """A connection factory for the SQLite file `path` that never creates it and refuses
    writes (PRAGMA query_only). A missing file is a DatabaseError naming it."""
    if not os.path.isfile(path):
        raise DatabaseError(f"database {url}: no such file {path} (opened read-only: nothing "
                            "is created; 'agent db sync', or a start without --dry-run, "
                            "creates it)")
    uri = f"file:{quote(os.path.abspath(path))}?mode=rw"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    return connect
