"""One engine and one session factory per process, built from the configuration.

SQLite (the embedded default) gets WAL and a busy timeout so the heartbeat thread and the
start-up work can share the file, and a watch on the file (`sqlite_file`); server databases get
pre-ping. Every call has a time limit (`deadlines`): a frozen server fails a statement within
statement_timeout instead of hanging it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from agent.db import deadlines
from agent.db import read_only as read_only_db
from agent.db.sqlite_file import SQLiteFile
from agent.errors import ConfigError, DatabaseError
from agent.files import create_private_file, ensure_directory
from agent.redact import UnsafeURL, check_url, redact_url, secrets_of

# The defaults of [database] connect_timeout and statement_timeout (seconds).
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_SECONDS = 10
# `agent db sync` and `db seed`: a schema change or a bulk load on a large database may take
# minutes; an hour still ends a hang.
OPERATOR_STATEMENT_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Database:
    """The engine and the places every caller gets its database work from: `sessions` (a
    session, or `sessions.begin()` for one transaction), `connect()` (a connection, for reads),
    `begin()` (a connection in one transaction) and `single_statement()` (one write that is its
    own transaction). Code takes a Database and uses only these, so that `bound_to` can put
    all of it on one connection."""

    engine: Engine
    sessions: sessionmaker[Session]
    # Set by bound_to: the one connection every session and connection runs on.
    connection: Connection | None = None

    @property
    def url(self) -> str:
        """The URL with every password masked (user-info and query): safe to log or print."""
        return redact_url(self.engine.url.render_as_string(hide_password=False))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The URL's secret values, for removing them from a driver's message."""
        return secrets_of(self.engine.url.render_as_string(hide_password=False))

    def dispose(self) -> None:
        self.engine.dispose()

    def bound_to(self, connection: Connection) -> Database:
        """This database with every session, connection and single statement on `connection`,
        each in a savepoint of the transaction `connection` is in (SQLAlchemy's
        join_transaction_mode="create_savepoint"): a commit releases its savepoint, a rollback
        returns to it, and the outer transaction stays the caller's. Tests open one
        connection, begin, bind, and roll back at the end, so nothing a test's code committed
        survives it. One thread only: a connection is not shared between threads."""
        sessions = sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                                expire_on_commit=False, info=self.sessions.kw.get("info"))
        return replace(self, sessions=sessions, connection=connection)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads, returned to the pool at the end (a bound database: the bound
        connection, in a savepoint)."""
        if self.connection is not None:
            with self.connection.begin_nested():
                yield self.connection
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end, rolled back on an error (a
        bound database: a savepoint, released or rolled back)."""
        if self.connection is not None:
            with self.connection.begin_nested():
                yield self.connection
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """A connection for one write that is its own transaction. On PostgreSQL it runs in
        autocommit (switched on the client, no round trip): the statement alone, without BEGIN
        and COMMIT, one round trip instead of three. Elsewhere (switching PyMySQL to autocommit
        costs round trips of its own; SQLite has no network) a transaction committed at the
        end. A bound database (`bound_to`): a savepoint released at the end."""
        if self.connection is not None:
            with self.begin() as conn:
                yield conn
        elif self.engine.url.get_backend_name() == "postgresql":
            with self.engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            with self.engine.begin() as conn:
                yield conn


def make_database(url: str, *, pool_size: int = 5,
                  connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                  statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
                  read_only: bool = False, create: bool = True) -> Database:
    """Build the engine and session factory for `url`; a bad URL is a ConfigError naming it
    (passwords masked), a URL whose password could not be masked (`agent.redact.check_url`) a
    ConfigError that does not show it. No connection is opened here. `connect_timeout` bounds
    opening a connection and `statement_timeout` every statement, commit and wait for a lock
    (seconds; see `agent.db.deadlines` for what each backend does with them).

    With `read_only` (a dry run) the database refuses every write, on the client and on the
    server (agent.db.read_only), and nothing is created: a missing SQLite file is a
    DatabaseError. Without `create` (commands that read or change existing rows) a missing
    SQLite file is a ConfigError (a mistyped path) and nothing is created either."""
    try:
        check_url(url)
    except UnsafeURL as exc:
        raise ConfigError(f"[database] connection (value not shown): not a URL whose password "
                          f"can be kept out of logs: {exc}") from None
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"[database] connection = {redact_url(url)!r}: not a database URL; "
                          "expected e.g. sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
                          ) from None
    backend = parsed.get_backend_name()
    kwargs: dict = {"future": True}
    watch = None
    if backend == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not create and not os.path.isfile(path):
            raise ConfigError(f"[database] connection = {redact_url(url)!r}: the database file "
                              f"{os.path.abspath(path)} does not exist; expected the path of an "
                              "existing database ('agent db sync' creates one)")
        if read_only:
            kwargs["creator"] = read_only_db.sqlite_creator(path or "", redact_url(url),
                                                            int(statement_timeout * 1000))
        elif path and path != ":memory:":
            watch = SQLiteFile(path)
            _create_sqlite_file(url, os.path.abspath(path))
        kwargs["connect_args"] = {"timeout": float(statement_timeout),
                                  "check_same_thread": False}
    elif backend == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                      connect_args=deadlines.postgresql_connect_args(connect_timeout,
                                                                    statement_timeout))
    elif backend in ("mysql", "mariadb"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                      pool_recycle=3600,
                      connect_args=deadlines.mysql_connect_args(connect_timeout,
                                                               statement_timeout))
    else:
        raise ConfigError(f"[database] connection = {redact_url(url)!r}: unsupported backend "
                          f"{backend!r}; expected sqlite, postgresql or mysql")
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(f"[database] connection = {redact_url(url)!r}: database driver "
                          f"missing ({exc}); install compute-agent[postgresql] or "
                          "compute-agent[mysql]") from None
    if read_only:
        event.listen(engine, "before_cursor_execute",
                     read_only_db.refuse_writes(redact_url(url)))
        on_connect = read_only_db.session_read_only(backend)
        if on_connect is not None:
            event.listen(engine, "connect", on_connect)
    elif backend == "sqlite":
        busy_ms = int(statement_timeout * 1000)
        event.listen(engine, "connect",
                     lambda dbapi_connection, _record: _sqlite_on_connect(dbapi_connection,
                                                                          busy_ms))
        if watch is not None:
            watch.attach(engine)
    if backend == "postgresql" and parsed.get_driver_name() == "psycopg":
        bounded = deadlines.postgresql_connection_class(
            statement_timeout + deadlines.CLIENT_GRACE_SECONDS)
        event.listen(engine, "do_connect",
                     lambda _dialect, _record, cargs, cparams: bounded.connect(*cargs,
                                                                              **cparams))
    info = {read_only_db.SESSION_INFO_KEY: True} if read_only else None
    return Database(engine, sessionmaker(engine, expire_on_commit=False, info=info))


def _create_sqlite_file(url: str, path: str) -> None:
    """Create the database's directory (0750) and the empty database file (0640) before SQLite
    does: SQLite would create the file 0644 whatever the umask, and gives its -wal and -shm files
    the database file's mode (`agent.files`)."""
    directory = os.path.dirname(path)
    try:
        ensure_directory(directory)
    except OSError as exc:
        raise DatabaseError(f"database {redact_url(url)}: cannot create the directory "
                            f"{directory}: {exc.strerror}") from None
    try:
        create_private_file(path)
    except OSError as exc:
        raise DatabaseError(f"database {redact_url(url)}: cannot create {path}: "
                            f"{exc.strerror}") from None


def database_from_conf(conf, *, read_only: bool = False, create: bool = True,
                       statement_timeout: float | None = None,
                       pool_size: int | None = None) -> Database:
    """`make_database` for the configured URL; a refused URL names where it was set (file and
    line, or the flag). `statement_timeout` (seconds) replaces the configured one: an
    operator's schema upgrade may run longer than any statement of the running agent;
    `pool_size` replaces [database] pool_size (the fleet sizes its pools by its workers)."""
    try:
        return make_database(conf.database.connection,
                             pool_size=pool_size or conf.database.pool_size,
                             connect_timeout=conf.database.connect_timeout,
                             statement_timeout=(conf.database.statement_timeout
                                                if statement_timeout is None
                                                else statement_timeout),
                             read_only=read_only, create=create)
    except ConfigError as exc:
        # Unset, the URL is derived from state_path: then that is where the path came from.
        origin = (conf.origins.get(("database", "connection"))
                  or conf.origins.get(("DEFAULT", "state_path")))
        if origin is None:
            raise
        raise ConfigError(f"{origin}: {exc}") from None


def _sqlite_on_connect(dbapi_connection, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        _switch_to_wal(cursor, busy_ms)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _switch_to_wal(cursor, busy_ms: int) -> None:
    """Put the file in WAL mode (a no-op once it is). The switch needs the file to itself, and
    while another connection holds a lock on a file not yet in WAL mode (two agents creating the
    same new database) SQLite answers "database is locked" at once, without waiting out its busy
    timeout: retry until that timeout has passed."""
    deadline = time.monotonic() + busy_ms / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.1)
