"""The schema on real SQLite, PostgreSQL and MariaDB: migrations, `agent db sync`, the start-up
schema check, and the database clock.

Tests that need an EMPTY database use `empty_db`: a fresh SQLite file, or this run's own server
database with every table dropped (the schema is put back afterwards for the shared fixtures).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading

import pytest
from sqlalchemy import MetaData, inspect, select, text

from agent.db import migrate
from agent.db.engine import Database, make_database
from agent.db.models import Base, Service, utcnow
from agent.errors import DatabaseError
from tests.conftest import _empty_tables, require_tier, server_url

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# DESIGN.md's contract: the columns each table has at least.
DESIGN_COLUMNS = {
    "services": {"id", "uuid", "host", "binary", "topic", "report_count", "disabled",
                 "disabled_reason", "forced_down", "last_seen_up", "created_at", "updated_at",
                 "deleted_at"},
    "compute_nodes": {"id", "uuid", "service_id", "host", "hypervisor_hostname", "vcpus",
                      "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
                      "free_ram_mb", "free_disk_gb", "running_vms", "hypervisor_type",
                      "hypervisor_version", "cpu_info", "stats", "created_at", "updated_at",
                      "deleted_at"},
    "instances": {"id", "uuid", "display_name", "host", "node", "vm_state", "task_state",
                  "power_state", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap",
                  "network_info", "created_at", "updated_at", "deleted_at"},
    "migrations": {"id", "uuid", "instance_uuid", "source_compute", "dest_compute", "source_node",
                   "dest_node", "migration_type", "status", "created_at", "updated_at"},
    "flavors": {"id", "flavorid", "name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap",
                "disabled"},
    "instance_actions": {"id", "action", "instance_uuid", "request_id", "user_id", "project_id",
                         "start_time", "finish_time", "message"},
    "instance_actions_events": {"id", "action_id", "event", "start_time", "finish_time",
                                "result", "traceback"},
}

SECRET = "s3cr3t-Pa55"


def _drop_everything(db: Database) -> None:
    with db.engine.begin() as conn:
        meta = MetaData()
        meta.reflect(conn)
        meta.drop_all(conn)


def _open_server_db(backend: str) -> Database:
    db = make_database(server_url(backend))
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the tier is missing
        db.dispose()
        require_tier(backend, False, f"cannot connect: {exc}")
    return db


def _empty_database(request, tmp_path, backend: str):
    if backend == "sqlite":
        db = make_database(f"sqlite:///{tmp_path}/empty/agent.sqlite")
        yield db
        db.dispose()
        return
    request.applymarker(getattr(pytest.mark, backend))
    db = _open_server_db(backend)
    _drop_everything(db)
    try:
        yield db
    finally:
        # Leave the database as the shared fixtures expect it: migrated and empty (without the
        # migration's default flavors: the `db` fixture does not empty a clean database).
        _drop_everything(db)
        migrate.upgrade(db)
        _empty_tables(db)
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def empty_db(request, tmp_path):
    """A database without any table, on each backend in turn."""
    yield from _empty_database(request, tmp_path, request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_transactional_db(request, tmp_path):
    """An empty database on the backends whose DDL is transactional."""
    yield from _empty_database(request, tmp_path, request.param)


@pytest.fixture(params=["postgresql", "mysql"])
def empty_server_db(request, tmp_path):
    """An empty server database (ensure_schema never upgrades those by itself)."""
    yield from _empty_database(request, tmp_path, request.param)


def _closed_port() -> int:
    """A local TCP port with nothing listening on it: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


UNREACHABLE_URLS = {
    "postgresql": "postgresql+psycopg://agent:{secret}@127.0.0.1:{port}/agent",
    "mysql": "mysql+pymysql://agent:{secret}@127.0.0.1:{port}/agent",
}


def _run_agent(*args: str, tmp_path) -> subprocess.CompletedProcess:
    conf = tmp_path / "agent.conf"
    conf.write_text("")
    return subprocess.run([sys.executable, "-m", "agent", "--config", str(conf), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


# -- migrations ---------------------------------------------------------------------------------

def test_head_is_alembic_head_and_revisions_are_alembic_history():
    from alembic.script import ScriptDirectory

    from agent.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(connection=None))
    assert script.get_heads() == [migrate.HEAD]
    history = [rev.revision for rev in script.walk_revisions()]
    assert tuple(reversed(history)) == migrate.REVISIONS


def test_migrated_schema_matches_models(any_db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with any_db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []
    assert migrate.current_revision(any_db) == migrate.HEAD


def test_upgrade_from_0001_keeps_services_and_adds_the_agent_identity(empty_db):
    from alembic import command

    from agent.db.migrate import alembic_config

    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text("INSERT INTO services (uuid, host, \"binary\", report_count) "
                          "VALUES ('00000000-0000-4000-8000-000000000001', 'old-host', "
                          "'compute-agent', 7)")
                     if conn.dialect.name != "mysql" else
                     text("INSERT INTO services (uuid, host, `binary`, report_count) "
                          "VALUES ('00000000-0000-4000-8000-000000000001', 'old-host', "
                          "'compute-agent', 7)"))
    assert migrate.current_revision(empty_db) == "0001"
    assert migrate.upgrade(empty_db) == "0001"
    assert migrate.current_revision(empty_db) == migrate.HEAD
    with empty_db.sessions() as session:
        row = session.scalars(select(Service)).one()
    assert (row.host, row.report_count, row.last_seen_by, row.started_at) == (
        "old-host", 7, None, None)


def test_default_flavors_are_novas(empty_db):
    """db sync creates nova's m1.tiny .. m1.xlarge, so a new database can launch at once."""
    migrate.upgrade(empty_db)
    with empty_db.engine.connect() as conn:
        rows = conn.execute(text("SELECT name, flavorid, vcpus, memory_mb, root_gb, ephemeral_gb, "
                                 "swap, disabled FROM flavors ORDER BY memory_mb")).all()
    assert [tuple(r) for r in rows] == [
        ("m1.tiny", "1", 1, 512, 1, 0, 0, False),
        ("m1.small", "2", 1, 2048, 20, 0, 0, False),
        ("m1.medium", "3", 2, 4096, 40, 0, 0, False),
        ("m1.large", "4", 4, 8192, 80, 0, 0, False),
        ("m1.xlarge", "5", 8, 16384, 160, 0, 0, False),
    ]


def test_upgrade_to_0004_stops_on_two_live_nodes_for_one_hypervisor(empty_db):
    from alembic import command

    from agent.db.migrate import alembic_config

    def add_node(conn, uuid, host):
        conn.execute(text("INSERT INTO compute_nodes (uuid, host, hypervisor_hostname, vcpus, "
                          "memory_mb, local_gb, vcpus_used, memory_mb_used, local_gb_used, "
                          "hypervisor_type, hypervisor_version, cpu_info) VALUES (:uuid, :host, "
                          "'hv-1', 1, 1, 1, 0, 0, 0, 'fake', 1, '')"),
                     {"uuid": uuid, "host": host})

    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0003")
        add_node(conn, "00000000-0000-4000-8000-00000000000a", "host-a")
        add_node(conn, "00000000-0000-4000-8000-00000000000b", "host-b")
    with pytest.raises(DatabaseError, match="compute_nodes has more than one live row for "
                                            "hypervisor hostname 'hv-1' \\(2 rows\\)"):
        migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == "0003"
    with empty_db.engine.begin() as conn:  # the operator deletes the wrong one
        conn.execute(text("UPDATE compute_nodes SET deleted = id WHERE host = 'host-b'"))
    assert migrate.upgrade(empty_db) == "0003"
    assert migrate.current_revision(empty_db) == migrate.HEAD


def test_design_columns_present(any_db):
    inspector = inspect(any_db.engine)
    for table, expected in DESIGN_COLUMNS.items():
        columns = {column["name"] for column in inspector.get_columns(table)}
        assert expected <= columns, f"{table} lacks {sorted(expected - columns)}"


def test_sync_twice_creates_then_keeps_schema_and_rows(empty_db):
    assert migrate.current_revision(empty_db) is None
    assert migrate.upgrade(empty_db) is None
    assert migrate.current_revision(empty_db) == migrate.HEAD
    with empty_db.sessions.begin() as session:
        session.add(Service(host="node1", binary="agent-compute", topic="compute"))

    assert migrate.upgrade(empty_db) == migrate.HEAD

    with empty_db.sessions() as session:
        assert session.scalars(select(Service.host)).all() == ["node1"]
    assert set(DESIGN_COLUMNS) <= set(inspect(empty_db.engine).get_table_names())


def test_concurrent_upgrades_end_with_one_schema(empty_db):
    # Two agents starting together on an empty database: one creates the schema, the other
    # waits for the schema lock and then finds it done.
    other = make_database(empty_db.engine.url.render_as_string(hide_password=False))
    start = threading.Barrier(2)
    results: dict[str, object] = {}

    def run(name: str, db: Database) -> None:
        start.wait()
        try:
            results[name] = migrate.upgrade(db)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc

    threads = [threading.Thread(target=run, args=(name, db))
               for name, db in (("a", empty_db), ("b", other))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    other.dispose()
    assert sorted(results.values(), key=str) == [migrate.HEAD, None], results
    assert migrate.current_revision(empty_db) == migrate.HEAD


def test_failed_upgrade_leaves_nothing_half_created(empty_transactional_db):
    db = empty_transactional_db
    # An index already using the name the migration needs makes it fail after it has created
    # its first tables (index names are database-wide on SQLite and PostgreSQL).
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE blocker (host VARCHAR(10))"))
        conn.execute(text("CREATE INDEX instances_host_idx ON blocker (host)"))

    with pytest.raises(DatabaseError, match="instances_host_idx"):
        migrate.upgrade(db)

    assert set(inspect(db.engine).get_table_names()) <= {"blocker", "alembic_version"}
    assert migrate.current_revision(db) is None
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE blocker"))
    assert migrate.upgrade(db) is None
    assert migrate.current_revision(db) == migrate.HEAD


def test_tables_without_revision_are_refused(empty_db):
    Base.metadata.create_all(empty_db.engine)
    with empty_db.sessions.begin() as session:
        session.add(Service(host="node1", binary="agent-compute"))

    with pytest.raises(DatabaseError) as caught:
        migrate.upgrade(empty_db)

    message = str(caught.value)
    assert "no schema revision" in message and "services" in message
    assert empty_db.url in message
    with empty_db.sessions() as session:
        assert session.scalars(select(Service.host)).all() == ["node1"]


def test_newer_schema_revision_is_refused(any_db):
    with any_db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        for attempt in (lambda: migrate.upgrade(any_db),
                        lambda: migrate.ensure_schema(any_db, auto_upgrade=True)):
            with pytest.raises(DatabaseError, match="revision 9999, which this agent does not "
                                                    "know .*newer compute-agent"):
                attempt()
    finally:
        with any_db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :head"),
                         {"head": migrate.HEAD})


# -- the database clock -----------------------------------------------------------------------

def test_utcnow_is_the_server_utc_clock_with_subsecond_precision(any_db):
    backend = any_db.engine.dialect.name
    with any_db.engine.connect() as conn:
        reads = [conn.execute(select(utcnow())).scalar_one() for _ in range(5)]
    assert reads == sorted(reads), "the database clock went backwards"
    host_utc = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    # Same machine: the server's UTC clock agrees with ours (a local-time rendering would be
    # off by the zone offset unless the zone is UTC).
    assert abs(host_utc - reads[-1]) < dt.timedelta(minutes=2)
    if backend == "sqlite":
        assert all(read.microsecond % 1000 == 0 for read in reads), "SQLite keeps milliseconds"
        assert any(read.microsecond for read in reads)
    else:
        assert any(read.microsecond % 1000 for read in reads), f"{backend} lost microseconds"


def test_created_at_defaults_to_the_database_clock(any_db):
    with any_db.engine.connect() as conn:
        before = conn.execute(select(utcnow())).scalar_one()
    with any_db.sessions.begin() as session:
        session.add(Service(host="node1", binary="agent-compute"))
    with any_db.sessions() as session:
        created_at = session.scalars(select(Service.created_at)).one()
    assert before <= created_at < before + dt.timedelta(minutes=2)


# -- the start-up check -------------------------------------------------------------------------

def test_ensure_schema_upgrades_embedded_sqlite(tmp_path, caplog):
    db = make_database(f"sqlite:///{tmp_path}/state/agent.sqlite")
    try:
        with caplog.at_level("INFO", logger="agent.db.migrate"):
            migrate.ensure_schema(db, auto_upgrade=True)
        assert migrate.current_revision(db) == migrate.HEAD
        assert any("from empty to " + migrate.HEAD in r.getMessage() for r in caplog.records)

        caplog.clear()
        with caplog.at_level("INFO", logger="agent.db.migrate"):
            migrate.ensure_schema(db, auto_upgrade=True)
        assert not caplog.records
    finally:
        db.dispose()


def test_ensure_schema_on_current_schema_does_not_import_alembic(sqlite_url):
    code = ("import sys\n"
            "from agent.db.engine import make_database\n"
            "from agent.db.migrate import ensure_schema\n"
            f"ensure_schema(make_database({sqlite_url!r}), auto_upgrade=True)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_ensure_schema_refuses_empty_server_schema(empty_server_db):
    with pytest.raises(DatabaseError) as caught:
        migrate.ensure_schema(empty_server_db, auto_upgrade=False)
    assert str(caught.value) == (
        f"database {empty_server_db.url} has no schema (empty database), expected revision "
        f"{migrate.HEAD}: run 'agent db sync'")
    assert inspect(empty_server_db.engine).get_table_names() == []


def test_ensure_schema_refuses_old_server_schema(empty_server_db, monkeypatch):
    db = empty_server_db
    migrate.upgrade(db)
    current = migrate.HEAD
    # Stand for an agent one revision newer than this database.
    monkeypatch.setattr(migrate, "REVISIONS", (*migrate.REVISIONS, "9000"))
    monkeypatch.setattr(migrate, "HEAD", "9000")

    with pytest.raises(DatabaseError) as caught:
        migrate.ensure_schema(db, auto_upgrade=False)

    assert str(caught.value) == (f"database {db.url} has schema revision "
                                 f"{current}, expected 9000: run 'agent db sync'")


@pytest.mark.parametrize("backend", sorted(UNREACHABLE_URLS))
def test_ensure_schema_unreachable_names_masked_url_and_reason(backend):
    url = UNREACHABLE_URLS[backend].format(secret=SECRET, port=_closed_port())
    db = make_database(url)
    try:
        with pytest.raises(DatabaseError) as caught:
            migrate.ensure_schema(db, auto_upgrade=False)
    finally:
        db.dispose()
    message = str(caught.value)
    assert SECRET not in message
    assert message.startswith(f"database {db.url}: ") and ":***@" in message
    assert "refused" in message.lower()
    assert "\n" not in message


# -- `agent db sync` ----------------------------------------------------------------------------

def test_db_sync_command_twice(empty_db, tmp_path):
    url = empty_db.engine.url.render_as_string(hide_password=False)

    first = _run_agent("db", "sync", "--db", url, tmp_path=tmp_path)
    second = _run_agent("db", "sync", "--db", url, tmp_path=tmp_path)

    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == (f"database {empty_db.url}: schema at revision {migrate.HEAD} "
                            "(upgraded from empty)\n")
    assert (second.returncode, second.stderr) == (0, "")
    assert second.stdout == (f"database {empty_db.url}: schema at revision {migrate.HEAD} "
                             "(already up to date)\n")
    assert migrate.current_revision(empty_db) == migrate.HEAD


def test_db_sync_command_creates_embedded_sqlite_under_state_path(tmp_path):
    result = _run_agent("db", "sync", "--state-path", str(tmp_path / "state"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"database sqlite:///{tmp_path}/state/agent.sqlite: ")
    assert (tmp_path / "state" / "agent.sqlite").exists()


@pytest.mark.parametrize("backend", sorted(UNREACHABLE_URLS))
def test_db_sync_command_unreachable_masks_password(backend, tmp_path):
    url = UNREACHABLE_URLS[backend].format(secret=SECRET, port=_closed_port())

    result = _run_agent("db", "sync", "--db", url, tmp_path=tmp_path)

    assert result.returncode != 0
    assert SECRET not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "***" in lines[0] and "127.0.0.1" in lines[0]
