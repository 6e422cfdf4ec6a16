"""Schema management: Alembic migrations, the schema check at start-up, `agent db sync`.

Alembic is configured in code (no alembic.ini): its script directory is the package directory
`agent/db/migrations`, so migrations work from an installed package, and it is given an open
connection rather than a URL, so a password never passes through its configuration.

The check at start-up (`current_revision`, `ensure_schema` on an up-to-date database) reads the
`alembic_version` table directly and never imports Alembic, which keeps start-up fast.

Every schema change runs in one transaction under a schema lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: an advisory lock; MariaDB/MySQL: GET_LOCK), so two agents starting at once on an
empty database end with one schema, and a failure on SQLite or PostgreSQL leaves nothing
half-created. (MariaDB commits each DDL statement: there a failed upgrade may leave some tables.)

A new revision: add `migrations/versions/NNNN_<what>.py` (`alembic_config(connection)` with
`alembic.command.revision(..., autogenerate=True)` drafts one from the models), then append its id
to REVISIONS; a test checks that HEAD is Alembic's head and that the migrated schema matches the
models on every backend.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from agent.db.engine import Database
from agent.errors import DatabaseError
from agent.redact import redact_text

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config as AlembicConfig

LOG = logging.getLogger(__name__)

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "alembic_version"

# Every revision this agent knows, oldest first; the last one is the schema the models describe.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005")
HEAD = REVISIONS[-1]

# Schema lock identifiers: any fixed value, the same in every agent.
_PG_LOCK_KEY = 0x636F6D7075746531  # "compute1" as a big-endian int64
_MYSQL_LOCK_NAME = "compute_agent.schema"
_MYSQL_LOCK_TIMEOUT_S = 120  # a schema upgrade of these tables takes seconds, not minutes


# -- reading the revision (no Alembic import) -------------------------------------------------

def current_revision(db: Database) -> str | None:
    """The schema revision recorded in the database, or None for a database without one (empty).

    An unreachable database raises DatabaseError naming the masked URL and the driver's reason.
    """
    try:
        with db.engine.connect() as conn:
            return _read_revision(conn)
    except SQLAlchemyError as exc:
        raise database_error(db, exc) from exc


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    # One row in a linear history; several would mean branches, which this project does not use.
    return ",".join(sorted(rows)) or None


# -- decisions (pure) --------------------------------------------------------------------------

def is_known_revision(revision: str | None) -> bool:
    """True for an empty database and for every revision this agent can upgrade from."""
    return revision is None or revision in REVISIONS


def unknown_revision_message(url: str, revision: str) -> str:
    return (f"database {url} has schema revision {revision}, which this agent does not know "
            f"(its newest is {HEAD}): the schema was upgraded by a newer compute-agent; upgrade "
            "this agent")


def outdated_schema_message(url: str, revision: str | None) -> str:
    if revision is None:
        return (f"database {url} has no schema (empty database), expected revision {HEAD}: "
                "run 'agent db sync'")
    return f"database {url} has schema revision {revision}, expected {HEAD}: run 'agent db sync'"


def describe_failure(exc: BaseException, *, secrets: tuple[str, ...] = ()) -> str:
    """The driver's reason for a failed database operation, on one line, passwords (and the
    `secrets` of the URL, wherever they appear) removed."""
    reason = getattr(exc, "orig", None) or exc
    message = " ".join(str(reason).split()) or type(reason).__name__
    return redact_text(message, secrets)


def database_error(db: Database, exc: BaseException) -> DatabaseError:
    """A one-line DatabaseError for `exc`: the masked URL and the driver's reason."""
    reason = describe_failure(exc, secrets=db.secrets)
    return DatabaseError(f"database {db.url}: {reason}")


def failure_error(db: Database, exc: BaseException, *, suffix: str = "") -> DatabaseError:
    """The one-line DatabaseError for a command whose statement failed with `exc`: when the
    schema is missing or not at HEAD, that is the reason (with the 'agent db sync' hint);
    otherwise the driver's reason, and no hint (an out-of-range value or a lost connection is
    not fixed by a schema upgrade). `suffix` is appended, e.g. " (nothing was changed)"."""
    try:
        revision = current_revision(db)
    except DatabaseError:
        revision = HEAD  # cannot even read the revision: the driver's reason says why
    if not is_known_revision(revision):
        return DatabaseError(unknown_revision_message(db.url, revision))
    if revision != HEAD:
        return DatabaseError(outdated_schema_message(db.url, revision))
    return DatabaseError(f"{database_error(db, exc)}{suffix}")


# -- changing the schema ----------------------------------------------------------------------

def alembic_config(connection: Connection | None) -> "AlembicConfig":
    """An Alembic configuration for the package's migrations, bound to `connection` (None: for
    reading the script directory only)."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    config.attributes["connection"] = connection
    return config


def upgrade(db: Database) -> str | None:
    """Create or upgrade the schema to HEAD; safe to run again (then it changes nothing).

    Returns the revision the database had before (None: it was empty). Raises DatabaseError with
    one line naming the masked URL when the database is unreachable, carries a revision this agent
    does not know, or has the agent's tables without a revision.
    """
    from alembic import command
    from alembic.util import CommandError

    try:
        with db.engine.connect() as conn, _schema_transaction(conn):
            before = _read_revision(conn)
            if not is_known_revision(before):
                raise DatabaseError(unknown_revision_message(db.url, before))
            if before is None:
                _refuse_unversioned_tables(conn, db.url)
            if before != HEAD:
                LOG.info("Upgrading the schema of database %s from %s to %s", db.url,
                         before or "empty", HEAD)
                command.upgrade(alembic_config(conn), "head")
    except (SQLAlchemyError, CommandError) as exc:
        raise database_error(db, exc) from exc
    return before


def ensure_schema(db: Database, *, auto_upgrade: bool | None = None) -> None:
    """At start-up: make sure the schema is at HEAD.

    Up to date: returns after one read. Empty or older: upgrades when `auto_upgrade`, otherwise
    raises DatabaseError telling the operator to run 'agent db sync'. By default only the
    embedded SQLite database upgrades itself: a shared server database is upgraded on purpose,
    once, by an operator.
    """
    if auto_upgrade is None:
        auto_upgrade = db.engine.url.get_backend_name() == "sqlite"
    revision = current_revision(db)
    if revision == HEAD:
        return
    if not is_known_revision(revision):
        raise DatabaseError(unknown_revision_message(db.url, revision))
    if not auto_upgrade:
        raise DatabaseError(outdated_schema_message(db.url, revision))
    upgrade(db)  # logs the upgrade at INFO


def _refuse_unversioned_tables(conn: Connection, url: str) -> None:
    from agent.db.models import Base

    present = sorted(set(inspect(conn).get_table_names()) & set(Base.metadata.tables))
    if present:
        raise DatabaseError(
            f"database {url} has the agent's tables ({', '.join(present)}) but no schema "
            "revision, so they were not created by 'agent db sync': back them up and drop them, "
            "then run 'agent db sync'")


@contextmanager
def _schema_transaction(conn: Connection) -> Iterator[None]:
    """One transaction holding the schema lock; committed when the block succeeds."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        with _sqlite_immediate_transaction(conn):
            yield
    elif dialect == "postgresql":
        with conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield
    elif dialect in ("mysql", "mariadb"):
        # A session lock, taken before the transaction begins (so its snapshot sees the work of
        # the previous holder) and released only after it has committed.
        with _mysql_session_lock(conn), conn.begin():
            yield
    else:  # pragma: no cover - the engine factory accepts only the three backends
        with conn.begin():
            yield


@contextmanager
def _mysql_session_lock(conn: Connection) -> Iterator[None]:
    got = conn.execute(text("SELECT GET_LOCK(:name, :timeout)"),
                       {"name": _MYSQL_LOCK_NAME, "timeout": _MYSQL_LOCK_TIMEOUT_S}).scalar()
    conn.commit()
    if got != 1:
        raise DatabaseError(f"another process has been changing the schema for "
                            f"{_MYSQL_LOCK_TIMEOUT_S} s; try again later")
    try:
        yield
    finally:
        try:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK_NAME})
            conn.commit()
        except SQLAlchemyError:
            conn.invalidate()  # closing the session releases its lock too


@contextmanager
def _sqlite_immediate_transaction(conn: Connection) -> Iterator[None]:
    # The sqlite3 module would run DDL outside any transaction; take over transaction control on
    # this one connection so the whole upgrade is one write-locked transaction.
    dbapi_connection = conn.connection.driver_connection
    saved = dbapi_connection.isolation_level
    dbapi_connection.isolation_level = None
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    finally:
        dbapi_connection.isolation_level = saved
