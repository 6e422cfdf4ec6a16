"""The embedded database's file: noticed when it is deleted, replaced or damaged.

An open SQLite connection keeps a deleted file alive: without a check, the agent would go on
beating into a file nobody else can open, and a new connection would silently create an empty
one in its place. `SQLiteFile` remembers which file (device and inode) the engine's connections
use and checks it at every pool checkout (one stat()):

- the file is gone: `DatabaseError` naming it, and no new connection is opened (that would
  create an empty file); the condition clears when a file is back at the path;
- another file is at the path (restored from a backup, moved in place): the pool's connections
  to the old file are dropped and the next statement runs on the new one;
- the file is not an SQLite database or is damaged: `DatabaseError` naming the file instead of
  SQLite's "file is not a database", which names none.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidatePoolError

from agent.errors import DatabaseError

LOG = logging.getLogger(__name__)


class SQLiteFile:
    """Watches the file of one SQLite engine; `attach(engine)` installs the checks."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file in use

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "do_connect", self._before_connect)
        event.listen(engine, "connect", self._connected)
        event.listen(engine, "checkout", self._checked_out)
        event.listen(engine, "handle_error", self._translate_error)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def gone_error(self) -> DatabaseError:
        return DatabaseError(f"database file {self.path} is gone: it was deleted while the agent "
                             "used it; restore it, or restart the agent to start a new, empty "
                             "database")

    # -- engine events ------------------------------------------------------------------------
    def _before_connect(self, _dialect, _record, _cargs, _cparams) -> None:
        # Once this engine has used a file, a missing one is an accident, not a first start:
        # sqlite3.connect would create an empty file in its place.
        with self._lock:
            known = self._identity is not None
        if known and self._stat() is None:
            raise self.gone_error()

    def _connected(self, _dbapi_connection, _record) -> None:
        identity = self._stat()
        with self._lock:
            self._identity = identity

    def _checked_out(self, _dbapi_connection, _record, _proxy) -> None:
        current = self._stat()
        with self._lock:
            known = self._identity
        if current == known:
            return
        if current is None:
            raise self.gone_error()
        LOG.warning("database file %s was replaced (another file is at its path now): "
                    "reconnecting to it", self.path)
        # Every pooled connection has the old file open: drop them all; the pool reconnects.
        raise InvalidatePoolError(f"database file {self.path} was replaced")

    def _translate_error(self, context) -> None:
        original = context.original_exception
        # Exactly sqlite3.DatabaseError: "file is not a database", "database disk image is
        # malformed". Its subclasses (OperationalError, IntegrityError, ...) are other faults.
        if type(original) is sqlite3.DatabaseError:
            raise DatabaseError(f"database file {self.path}: {original}: it is damaged or not "
                                "an SQLite database; restore it from a backup, or move it "
                                "away to start a new, empty database") from original
