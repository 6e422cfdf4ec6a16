"""`agent services ...` through the real command line, on every backend."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import update

from agent.cli import main
from agent.db.models import Instance, Migration, Service
from agent.heartbeat import Heartbeat
from agent.registry import COMPUTE_BINARY, register_service

LONG_AGO = dt.datetime(2020, 1, 1, 0, 0, 0)


@pytest.fixture
def cli(any_db_url, capsys):
    """Run `agent services ARGS --db URL`; returns (exit status, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = main(["services", *args, "--db", any_db_url])
        except SystemExit as exc:  # a usage error or a refused value (argparse's)
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err
    return run


def add_service(db, host: str, *, beat: bool = True) -> int:
    record = register_service(db, host, starting=False)
    if beat:
        assert Heartbeat(db, record.id, 10).beat()
    return record.id


def set_service(db, service_id: int, **values) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(Service).where(Service.id == service_id).values(**values))


def listed(cli, *args: str) -> dict[str, dict]:
    status, out, _ = cli("list", "--format", "json", *args)
    assert status == 0
    return {s["host"]: s for s in json.loads(out)["services"]}


def table_lines(out: str) -> list[str]:
    """The lines of a `services list` table: everything up to the first empty line or note."""
    lines = []
    for line in out.splitlines():
        if not line or line.startswith("note:"):
            break
        lines.append(line)
    return lines


def add_instance(db, host: str) -> None:
    with db.sessions.begin() as session:
        session.add(Instance(display_name="vm1", host=host, node=host, vm_state="active",
                             power_state=1))


def add_migration(db, *, source: str, dest: str, migration_type: str, status: str) -> int:
    with db.sessions.begin() as session:
        migration = Migration(instance_uuid="9d3e4bc4-0a4e-4f73-9c52-5f1ac2d1f3a1",
                              source_compute=source, dest_compute=dest, source_node=source,
                              dest_node=dest, migration_type=migration_type, status=status)
        session.add(migration)
        session.flush()
        return migration.id


def set_migration_status(db, migration_id: int, status: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(Migration).where(Migration.id == migration_id)
                     .values(status=status))


def test_list_table_shows_state_and_down_reasons(any_db, cli):
    add_service(any_db, "alive")
    stale = add_service(any_db, "stale")
    set_service(any_db, stale, last_seen_up=LONG_AGO, last_seen_host_time=LONG_AGO)
    never = add_service(any_db, "never", beat=False)
    set_service(any_db, never, created_at=LONG_AGO)

    status, out, err = cli("list")

    assert status == 0 and err == ""
    header, *lines = table_lines(out)
    for column in ("ID", "Binary", "Host", "Zone", "Status", "State", "Updated At", "Last Seen Up",
                   "Disabled Reason", "Forced Down", "Clock Offset", "Down Reason"):
        assert column in header
    rows = {line.split()[2]: line for line in lines}
    assert set(rows) == {"alive", "stale", "never"}
    assert " up " in rows["alive"] and "enabled" in rows["alive"]
    assert " down " in rows["stale"] and "last seen" in rows["stale"]
    assert "(service_down_time 60 s)" in rows["stale"]
    assert " down " in rows["never"] and "never reported (registered" in rows["never"]


def test_list_json_has_every_field(any_db, cli):
    service_id = add_service(any_db, "cn1")

    services = listed(cli)

    entry = services["cn1"]
    assert entry["id"] == service_id and entry["binary"] == COMPUTE_BINARY
    assert (entry["status"], entry["state"]) == ("enabled", "up")
    assert entry["forced_down"] is False and entry["disabled_reason"] is None
    assert entry["down_reason"] is None and entry["report_count"] == 1
    assert entry["zone"] == "nova"
    for field in ("updated_at", "last_seen_up"):
        dt.datetime.fromisoformat(entry[field])


def test_list_down_reason_says_how_long_ago(any_db, cli):
    service_id = add_service(any_db, "stale")
    set_service(any_db, service_id, last_seen_up=LONG_AGO, last_seen_host_time=LONG_AGO)
    entry = listed(cli)["stale"]
    assert entry["state"] == "down"
    assert entry["age_seconds"] > 365 * 86400
    assert entry["down_reason"] == (f"last seen {entry['age_seconds']:.0f} s ago "
                                    "(service_down_time 60 s)")


def test_list_beat_in_the_future_is_down(any_db, cli):
    # The database server's clock was set back a day after this service's last beat.
    service_id = add_service(any_db, "ahead")
    with any_db.engine.connect() as conn:
        row = conn.execute(Service.__table__.select().where(Service.id == service_id)).one()
    tomorrow = row.last_seen_up + dt.timedelta(days=1)
    set_service(any_db, service_id, last_seen_up=tomorrow, last_seen_host_time=tomorrow)

    entry = listed(cli)["ahead"]
    status, out, _ = cli("list")

    assert entry["state"] == "down"
    assert entry["down_reason"].startswith("last beat 8640")
    assert "s in the future (database clock set back?; tolerance 5 s)" in entry["down_reason"]
    line = next(line for line in out.splitlines() if " ahead " in line)
    assert " down " in line and "in the future" in line


def test_list_filters_by_host_and_binary(any_db, cli):
    add_service(any_db, "cn1")
    add_service(any_db, "cn2")
    register_service(any_db, "cn1", binary="other-binary", starting=False)

    assert set(listed(cli, "--host", "cn2")) == {"cn2"}
    status, out, _ = cli("list", "--format", "json", "--binary", "other-binary")
    assert [(s["host"], s["binary"]) for s in json.loads(out)["services"]] == [
        ("cn1", "other-binary")]
    status, out, _ = cli("list", "--host", "nowhere")
    assert status == 0 and "No services" in out
    status, out, _ = cli("list", "--host", "nowhere", "--format", "json")
    assert json.loads(out)["services"] == []


def test_disable_with_reason_then_enable(any_db, cli):
    add_service(any_db, "cn1")

    status, out, err = cli("disable", "--host", "cn1", "--reason", "replacing a DIMM")
    assert status == 0 and err == ""
    assert out.count("\n") == 1 and "disabled" in out and "replacing a DIMM" in out
    entry = listed(cli)["cn1"]
    assert (entry["status"], entry["disabled_reason"]) == ("disabled", "replacing a DIMM")
    assert entry["state"] == "up"  # disabled is not down
    status, out, _ = cli("list", "--host", "cn1")
    assert "replacing a DIMM" in out

    status, out, _ = cli("enable", "--host", "cn1")
    assert status == 0 and "enabled" in out and "replacing a DIMM" in out
    entry = listed(cli)["cn1"]
    assert (entry["status"], entry["disabled_reason"]) == ("enabled", None)

    status, out, _ = cli("enable", "--host", "cn1")
    assert status == 0 and "already enabled" in out


def test_disable_reason_over_255_characters_refused(any_db, cli):
    add_service(any_db, "cn1")

    status, out, err = cli("disable", "--host", "cn1", "--reason", "x" * 256)

    assert status != 0 and out == ""
    assert "256 characters" in err and "255" in err and err.count("\n") == 1
    assert listed(cli)["cn1"]["status"] == "enabled"
    status, _, _ = cli("disable", "--host", "cn1", "--reason", "y" * 255)
    assert status == 0 and listed(cli)["cn1"]["disabled_reason"] == "y" * 255


def test_disable_reason_reserved_for_the_agent_refused(any_db, cli):
    add_service(any_db, "cn1")
    status, _, err = cli("disable", "--host", "cn1", "--reason", "AUTO: starting")
    assert status != 0 and "reserved" in err
    assert listed(cli)["cn1"]["status"] == "enabled"


def test_force_down_and_unset_refused_while_evacuations_done(any_db, cli):
    add_service(any_db, "cn1")

    status, out, _ = cli("force-down", "--host", "cn1")
    assert status == 0 and "forced down" in out
    entry = listed(cli)["cn1"]
    assert (entry["state"], entry["down_reason"], entry["forced_down"]) == (
        "down", "forced down", True)

    evacuation = add_migration(any_db, source="cn1", dest="cn2", migration_type="evacuation",
                               status="done")
    # A finished evacuation from another host does not count.
    add_migration(any_db, source="cn9", dest="cn1", migration_type="evacuation", status="done")
    status, out, err = cli("force-down", "--host", "cn1", "--unset")
    assert status != 0 and out == ""
    assert "1 evacuation migration from this host is still" in err and "'done'" in err and "cn1" in err
    assert listed(cli)["cn1"]["forced_down"] is True

    set_migration_status(any_db, evacuation, "completed")
    status, out, _ = cli("force-down", "--host", "cn1", "--unset")
    assert status == 0 and "unset" in out
    entry = listed(cli)["cn1"]
    assert (entry["state"], entry["forced_down"], entry["down_reason"]) == ("up", False, None)


def test_delete_refused_with_an_instance_on_the_host(any_db, cli):
    add_service(any_db, "cn1")
    add_instance(any_db, "cn1")

    status, out, err = cli("delete", "--host", "cn1")

    assert status != 0 and out == ""
    assert "1 instance is on this host" in err and "cn1" in err
    assert "cn1" in listed(cli)


@pytest.mark.parametrize("source,dest,status", [
    pytest.param("cn1", "cn2", "migrating", id="outgoing-migrating"),
    pytest.param("cn2", "cn1", "pre-migrating", id="incoming-pre-migrating"),
    pytest.param("cn2", "cn1", "finished", id="resize-awaiting-confirm"),
])
def test_delete_refused_with_a_migration_in_progress(any_db, cli, source, dest, status):
    add_service(any_db, "cn1")
    migration = add_migration(any_db, source=source, dest=dest, migration_type="migration",
                              status=status)

    code, _, err = cli("delete", "--host", "cn1")
    assert code != 0 and "1 migration from or to this host is in progress" in err and "in progress" in err
    assert "cn1" in listed(cli)

    set_migration_status(any_db, migration, "confirmed")
    code, out, _ = cli("delete", "--host", "cn1")
    assert code == 0 and "deleted" in out


def test_delete_removes_the_service_from_the_list(any_db, cli):
    add_service(any_db, "cn1")
    add_service(any_db, "cn2")
    add_migration(any_db, source="cn1", dest="cn2", migration_type="migration",
                  status="confirmed")
    add_instance(any_db, "cn2")

    status, out, err = cli("delete", "--host", "cn1")

    assert status == 0 and err == "" and "deleted" in out
    assert set(listed(cli)) == {"cn2"}
    status, _, err = cli("enable", "--host", "cn1")
    assert status != 0 and "no service" in err


@pytest.mark.parametrize("action", [["enable"], ["disable"], ["force-down"],
                                    ["force-down", "--unset"], ["delete"]],
                         ids=lambda a: "-".join(a))
def test_unknown_host_or_binary_is_a_clear_error(any_db, cli, action):
    add_service(any_db, "cn1")

    status, out, err = cli(*action, "--host", "nosuch")
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and "'nosuch'" in err and COMPUTE_BINARY in err

    status, _, err = cli(*action, "--host", "cn1", "--binary", "nosuch-binary")
    assert status != 0 and "'nosuch-binary'" in err
    entry = listed(cli)["cn1"]
    assert (entry["status"], entry["forced_down"]) == ("enabled", False)


def test_actions_require_host(sqlite_url, capsys):
    status = main(["services", "disable", "--db", sqlite_url])
    _, err = capsys.readouterr()
    assert status != 0 and "--host is required" in err


def test_common_options_before_the_command(sqlite_db, sqlite_url, capsys):
    add_service(sqlite_db, "cn1")
    assert main(["--db", sqlite_url, "services", "list", "--format", "json"]) == 0
    out, _ = capsys.readouterr()
    assert [s["host"] for s in json.loads(out)["services"]] == ["cn1"]


def test_database_without_schema_is_a_clear_error(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/empty.sqlite"
    status = main(["services", "list", "--db", url])
    _, err = capsys.readouterr()
    assert status != 0 and "agent db sync" in err and err.count("\n") == 1
