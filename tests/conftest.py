"""Shared fixtures: test tiers and databases.

A tier whose real part is missing (a PostgreSQL server, libvirtd, root for a network namespace)
is skipped with the reason; under CI (CI=true) a missing tier fails instead, so CI cannot go
green on skipped tests.

Database URLs for the server tiers come from AGENT_TEST_POSTGRESQL_URL and AGENT_TEST_MYSQL_URL
(`.ci/run` sets both). Each test gets empty tables: `db` (in-process, one thread) through a
transaction rolled back after the test, the others (`any_db`, `any_db_url`, `sqlite_db`, ...)
by emptying every table before it.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
from sqlalchemy import make_url, text

from agent.db.engine import Database, make_database

IN_CI = os.environ.get("CI") == "true"

SERVER_URL_ENV = {
    "postgresql": "AGENT_TEST_POSTGRESQL_URL",
    "mysql": "AGENT_TEST_MYSQL_URL",
}


def require_tier(tier: str, available: bool, reason: str) -> None:
    """Skip (or, under CI, fail) the calling test, or the calling module when called at import
    time, when its real part is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required test tier '{tier}' is unavailable under CI: {reason}",
                    pytrace=False)
    pytest.skip(f"tier '{tier}' unavailable: {reason}", allow_module_level=True)


def import_libvirt():
    """The libvirt module; without libvirt-python the 'libvirt' tier is missing."""
    require_tier("libvirt", importlib.util.find_spec("libvirt") is not None,
                 "libvirt-python is not installed")
    import libvirt

    return libvirt


def server_url(backend: str) -> str:
    env = SERVER_URL_ENV[backend]
    url = os.environ.get(env)
    require_tier(backend, bool(url), f"{env} is not set")
    return url


def _create_schema(db: Database) -> None:
    from agent.db import migrate

    migrate.upgrade(db)


def _empty_tables(db: Database) -> None:
    from agent.db.models import Base

    with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A command run in-process (`main([...])`) sets up logging on the stderr of that test;
    the next test must not log into it once it is closed. pytest's own capture handlers are
    left to pytest."""
    import logging

    root = logging.getLogger()
    handlers, level = set(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


class _ServerDatabases(dict):
    """The migrated server databases of this session (backend -> Database), and which of them
    may hold rows a test left (`dirty`): a database is emptied before a test only when dirty."""

    def __init__(self):
        super().__init__()
        self.dirty: set[str] = set()


@pytest.fixture(scope="session")
def _server_databases():
    created = _ServerDatabases()
    yield created
    for db in created.values():
        db.dispose()


@pytest.fixture(scope="session")
def _rolled_back_sqlite_url(tmp_path_factory) -> str:
    """One migrated SQLite file for every `db` test of the session: each test's writes are
    rolled back, so the file stays as the migration left it."""
    return _prepare_url("sqlite", tmp_path_factory.mktemp("rolled-back"), {})


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db(request, _server_databases, _rolled_back_sqlite_url) -> Database:
    """A Database on each backend in turn, migrated and without rows of earlier tests (as
    `any_db`; on SQLite the migration's default flavors are there), whose every session,
    connection and single statement runs on ONE connection inside an outer transaction that
    is rolled back after the test (Database.bound_to; the code's commits release savepoints):
    nothing the test wrote survives it and no table is emptied.

    For tests whose database work all runs in-process on the test's thread. Tests that start
    agent processes, or threads that need connections of their own (a heartbeat thread,
    racing writers, the lifecycle-event worker handling an event the test waits for), or that
    open another Database or pass a URL to a command, cannot see the uncommitted rows or
    would share the one connection between threads: they keep `any_db` / `any_db_url` /
    `sqlite_db`, whose tables are emptied (a new SQLite file) before each test instead. A test
    that adds or removes rows outside the transaction fails at teardown, and the database is
    reset after it (the server tables emptied, the SQLite file migrated anew, with its default
    flavors)."""
    yield from _rolled_back(request, request.param, _server_databases, _rolled_back_sqlite_url)


@pytest.fixture
def sqlite_rolled_back_db(request, _rolled_back_sqlite_url) -> Database:
    """`db` on SQLite only: for in-process tests of the SQLite default alone."""
    yield from _rolled_back(request, "sqlite", None, _rolled_back_sqlite_url)


def _rolled_back(request, backend: str, server_databases, sqlite_url: str):
    if backend == "sqlite":
        base = make_database(sqlite_url)
    else:
        request.applymarker(getattr(pytest.mark, backend))
        _prepare_url(backend, None, server_databases, rolled_back=True)
        base = server_databases[backend]
    before = _row_count(base)
    if before and backend != "sqlite":  # rows written behind the fixtures' back
        _empty_tables(base)
        before = 0
    conn = base.engine.connect()
    outer = begin_outer_transaction(conn)
    try:
        yield base.bound_to(conn)
    finally:
        outer.rollback()
        conn.close()
        left = _row_count(base) - before
        if backend == "sqlite":
            base.dispose()
            if left:
                _rebuild_sqlite(sqlite_url)
        elif left:
            _empty_tables(base)
    if left:
        pytest.fail(f"writes outside the db fixture's transaction survived the test ({left:+d} "
                    "rows): something used a connection of its own; use any_db instead",
                    pytrace=False)


def _rebuild_sqlite(url: str) -> None:
    """Migrate the shared SQLite file of the `db` tests anew after a test left rows in it:
    emptied instead, it would lose the rows the migration seeds (the default flavors) and the
    later tests that launch with m1.tiny would fail for no reason of their own."""
    path = make_url(url).database
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = make_database(url)
    try:
        _create_schema(db)
    finally:
        db.dispose()


def _row_count(db: Database) -> int:
    """The number of rows in all tables, in one statement."""
    from sqlalchemy import func, select

    from agent.db.models import Base

    counts = [select(func.count()).select_from(t).scalar_subquery()
              for t in Base.metadata.sorted_tables]
    with db.engine.connect() as conn:
        return conn.execute(select(sum(counts[1:], counts[0]))).scalar()


def begin_outer_transaction(conn):
    """Begin the outer transaction of a `db` test. pysqlite opens a transaction only before
    a write and would let the first savepoint's release commit: on SQLite the driver's own
    transaction handling is switched off and BEGIN sent explicitly, so savepoints nest in
    it."""
    if conn.dialect.name != "sqlite":
        return conn.begin()
    conn.connection.driver_connection.isolation_level = None
    outer = conn.begin()
    conn.exec_driver_sql("BEGIN")
    return outer


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_db_url(request, tmp_path, _server_databases) -> str:
    """A URL of an empty, migrated database on each backend in turn."""
    backend = request.param
    if backend != "sqlite":
        request.applymarker(getattr(pytest.mark, backend))
    return _prepare_url(backend, tmp_path, _server_databases)


@pytest.fixture
def any_db(any_db_url) -> Database:
    db = make_database(any_db_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return _prepare_url("sqlite", tmp_path, {})


@pytest.fixture
def sqlite_db(sqlite_url) -> Database:
    db = make_database(sqlite_url)
    yield db
    db.dispose()


@pytest.fixture
def postgresql_url(_server_databases) -> str:
    return _prepare_url("postgresql", None, _server_databases)


def _prepare_url(backend: str, tmp_path, cache: _ServerDatabases | dict, *,
                 rolled_back: bool = False) -> str:
    """The URL of a migrated database without rows: a new SQLite file under `tmp_path`, or the
    session's server database (`cache`), emptied when a test may have left rows in it. With
    `rolled_back` the caller's test writes only in a transaction it rolls back, so the
    database stays clean after it."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/agent.sqlite"
        db = make_database(url)
        _create_schema(db)
        db.dispose()
        return url
    url = server_url(backend)
    if backend not in cache:
        db = make_database(url)
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means the tier is missing
            require_tier(backend, False, f"cannot connect: {exc}")
        _create_schema(db)
        cache[backend] = db
        cache.dirty.add(backend)  # rows an earlier session may have left
    dirty = cache.dirty
    if backend in dirty:
        _empty_tables(cache[backend])
        dirty.discard(backend)
    if not rolled_back:
        dirty.add(backend)
    return url


# Last: tests.pgserver uses require_tier from this module.
from tests.pgserver import throwaway_postgresql  # noqa: E402,F401 - a fixture for every test
