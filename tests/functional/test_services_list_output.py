"""What `agent services list` shows: a table that stays one line per service and readable
whatever the rows hold, nova's Zone column, why a service is down, and the clock it is judged
on. Run through the real command line on every backend."""

from __future__ import annotations

import json

from agent.registry import register_service
from tests.functional.test_services_cli import (LONG_AGO, add_service, cli,  # noqa: F401
                                                listed, set_service, table_lines)

# 255 characters (the column's size) of words: what an operator's long reason looks like.
LONG_REASON = ("waiting for the vendor to replace the second power supply unit and the "
               "failed fan tray; do not schedule anything here before the firmware of the "
               "storage controller is updated and the burn-in test of the new memory modules "
               "has run for a whole day")[:255]


def test_long_reason_keeps_the_table_narrow_and_cuts_at_a_word(any_db, cli):
    add_service(any_db, "cn1")
    service_id = add_service(any_db, "cn2")
    set_service(any_db, service_id, disabled=True, disabled_reason=LONG_REASON)

    status, out, _ = cli("list")

    assert status == 0
    header, *rows = table_lines(out)
    assert len(rows) == 2
    assert max(len(line) for line in (header, *rows)) < 260
    row = next(line for line in rows if " cn2 " in line)
    shown = row.split("waiting", 1)[1].split("...", 1)[0]
    assert ("waiting" + shown).rstrip() in LONG_REASON
    # The cut falls after a whole word of the reason.
    assert LONG_REASON.startswith("waiting" + shown)
    next_char = LONG_REASON[len("waiting" + shown)]
    assert next_char in " ,;", f"cut inside a word: {shown!r}"
    assert listed(cli)["cn2"]["disabled_reason"] == LONG_REASON


def test_control_characters_do_not_break_the_row(any_db, cli):
    service_id = add_service(any_db, "cn1")
    reason = "line one\nline two\r\x1b[31mred\x1b[0m\ttab\u202eevil"
    set_service(any_db, service_id, disabled=True, disabled_reason=reason)

    status, out, _ = cli("list")

    assert status == 0
    header, *rows = table_lines(out)
    assert len(rows) == 1
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "line one\\nline two\\r\\x1b[31m" in rows[0]
    assert listed(cli)["cn1"]["disabled_reason"] == reason


def test_zone_column_nova_for_compute_internal_otherwise(any_db, cli):
    add_service(any_db, "cn1")
    register_service(any_db, "cn1", binary="nova-scheduler", starting=False)

    status, out, _ = cli("list")

    header, *rows = table_lines(out)
    columns = header.split("  ")
    assert [c.strip() for c in columns if c.strip()][:4] == ["ID", "Binary", "Host", "Zone"]
    zones = {line.split()[1]: line.split()[3] for line in rows}
    assert zones == {"compute-agent": "nova", "nova-scheduler": "internal"}
    entries = json.loads(cli("list", "--format", "json")[1])["services"]
    assert {e["binary"]: e["zone"] for e in entries} == zones


def test_service_that_died_in_start_up_says_so(any_db, cli):
    crashed = register_service(any_db, "crashed", starting=True).id
    set_service(any_db, crashed, last_seen_up=LONG_AGO, last_seen_host_time=LONG_AGO)
    never = register_service(any_db, "never", starting=True).id
    set_service(any_db, never, created_at=LONG_AGO)
    starting = add_service(any_db, "starting")
    set_service(any_db, starting, disabled=True, disabled_reason="AUTO: starting")

    services = listed(cli)

    assert services["crashed"]["state"] == "down"
    assert services["crashed"]["down_reason"].startswith(
        "died in start-up, last seen ")
    assert services["never"]["down_reason"].startswith(
        "died in start-up, never reported (registered ")
    # Still starting and beating: up, no reason.
    assert (services["starting"]["state"], services["starting"]["down_reason"]) == ("up", None)
    status, out, _ = cli("list", "--host", "crashed")
    assert "died in start-up" in table_lines(out)[1]


def test_clock_offset_is_n_a_on_sqlite_and_measured_on_servers(any_db, any_db_url, cli):
    add_service(any_db, "cn1")

    status, out, err = cli("list")
    entry = listed(cli)["cn1"]
    source = json.loads(cli("list", "--format", "json")[1])["clock_source"]

    assert status == 0 and err == ""
    row = table_lines(out)[1]
    if any_db_url.startswith("sqlite"):
        assert " n/a " in row and entry["clock_offset_seconds"] is None
        assert "note: SQLite has no database server clock" in out
        assert source == "each process's own clock (SQLite)"
    else:
        assert " n/a " not in row and abs(entry["clock_offset_seconds"]) < 5
        assert "note:" not in out and source == "database server"
