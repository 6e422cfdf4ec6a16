"""Registering the service row, and the agent's automatic disable/enable, on every backend."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import event, func, select, update

from agent import registry
from agent.control.services import delete_service, set_disabled
from agent.db.engine import make_database
from agent.db.models import Service
from agent.errors import StartupError
from agent.heartbeat import Heartbeat
from agent.registry import (AUTO_STARTING, NEW_SERVICE_DISABLED, auto_disable, auto_enable,
                            finish_starting, load_service, register_service,
                            replace_auto_reason)
from tests.functional.compute_helpers import in_transaction


def live_rows(db, host: str) -> list[Service]:
    with db.sessions() as session:
        return list(session.scalars(select(Service).where(Service.host == host,
                                                          Service.deleted == 0)))


def test_register_creates_row_disabled_while_starting_then_enables(db):
    record = register_service(db, "cn1")

    assert (record.host, record.binary) == ("cn1", registry.COMPUTE_BINARY)
    assert record.disabled and record.disabled_reason == AUTO_STARTING
    [row] = live_rows(db, "cn1")
    assert row.report_count == 0 and row.topic == registry.COMPUTE_TOPIC
    assert finish_starting(db, record.id) is True
    after = load_service(db, "cn1")
    assert not after.disabled and after.disabled_reason is None
    assert finish_starting(db, record.id) is False  # nothing left to lift


def test_register_again_reuses_the_row(db):
    first = register_service(db, "cn1")
    finish_starting(db, first.id)
    second = register_service(db, "cn1")

    assert second.id == first.id and second.uuid == first.uuid
    assert second.disabled_reason == AUTO_STARTING
    assert len(live_rows(db, "cn1")) == 1


def test_register_without_starting_leaves_row_enabled(db):
    record = register_service(db, "cn1", starting=False)
    assert not record.disabled and record.disabled_reason is None


def test_concurrent_registration_ends_with_one_row(any_db, any_db_url):
    # Each thread uses its own engine, like two agent processes.
    databases = [make_database(any_db_url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))
    results, errors = [], []

    def start(db):
        try:
            barrier.wait(timeout=30)
            results.append(register_service(db, "racer"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for db in databases:
        db.dispose()

    assert errors == []
    assert len({r.id for r in results}) == 1 and len(results) == 4
    assert len(live_rows(any_db, "racer")) == 1


def test_insert_race_loser_reads_the_winners_row(any_db, any_db_url):
    """Force the race deterministically: just before our INSERT reaches the database, another
    process's registration of the same host commits."""
    other = make_database(any_db_url)
    winner = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO SERVICES") and not winner:
            winner.append(register_service(other, "racer", starting=False))

    event.listen(any_db.engine, "before_cursor_execute", before_cursor_execute)
    try:
        loser = register_service(any_db, "racer")
    finally:
        event.remove(any_db.engine, "before_cursor_execute", before_cursor_execute)
        other.dispose()

    assert winner and loser.id == winner[0].id
    assert len(live_rows(any_db, "racer")) == 1
    # The loser still marks the (enabled) row as starting.
    assert loser.disabled_reason == AUTO_STARTING


def test_enable_new_services_false_creates_disabled_row_with_reason(db):
    record = register_service(db, "cn1", enable_new=False)

    assert record.disabled and record.disabled_reason == NEW_SERVICE_DISABLED
    assert "enable_new_services" in record.disabled_reason
    # Finishing start-up does not enable what the configuration asked to keep disabled.
    assert finish_starting(db, record.id) is False
    assert load_service(db, "cn1").disabled_reason == NEW_SERVICE_DISABLED


def test_enable_new_services_false_does_not_touch_an_existing_row(db):
    first = register_service(db, "cn1")
    finish_starting(db, first.id)
    again = register_service(db, "cn1", enable_new=False)
    assert again.id == first.id and again.disabled_reason == AUTO_STARTING
    assert finish_starting(db, again.id) is True


def test_operator_disable_before_start_is_kept(db):
    first = register_service(db, "cn1", starting=False)
    in_transaction(db, set_disabled, "cn1", registry.COMPUTE_BINARY, True, "hardware repair")

    record = register_service(db, "cn1")
    assert record.id == first.id
    assert record.disabled and record.disabled_reason == "hardware repair"
    assert finish_starting(db, record.id) is False
    after = load_service(db, "cn1")
    assert after.disabled and after.disabled_reason == "hardware repair"


def test_operator_disable_without_reason_before_start_is_kept(db):
    register_service(db, "cn1", starting=False)
    in_transaction(db, set_disabled, "cn1", registry.COMPUTE_BINARY, True, None)

    record = register_service(db, "cn1")
    assert record.disabled and record.disabled_reason is None
    assert finish_starting(db, record.id) is False
    assert load_service(db, "cn1").disabled


def test_operator_disable_during_start_is_kept(db):
    record = register_service(db, "cn1")
    in_transaction(db, set_disabled, "cn1", registry.COMPUTE_BINARY, True, "draining")

    assert finish_starting(db, record.id) is False
    assert load_service(db, "cn1").disabled_reason == "draining"


def test_auto_disable_and_enable_never_override_an_operator(db):
    record = register_service(db, "cn1", starting=False)

    assert auto_disable(db, record.id, "AUTO: libvirt connection lost") is True
    assert load_service(db, "cn1").disabled_reason == "AUTO: libvirt connection lost"
    # A different automatic reason does not lift it.
    assert auto_enable(db, record.id, "AUTO: something else") is False
    assert auto_enable(db, record.id, "AUTO: libvirt connection lost") is True
    assert not load_service(db, "cn1").disabled

    in_transaction(db, set_disabled, "cn1", registry.COMPUTE_BINARY, True, "maintenance")
    assert auto_disable(db, record.id, "AUTO: libvirt connection lost") is False
    assert auto_enable(db, record.id, "AUTO: libvirt connection lost") is False
    after = load_service(db, "cn1")
    assert after.disabled and after.disabled_reason == "maintenance"


@pytest.mark.parametrize("left_by_earlier_run", [
    "AUTO: connection to libvirt lost", "AUTO: start-up failed: no route to libvirtd"], ids=str)
def test_automatic_reason_of_an_earlier_run_is_reevaluated(db, left_by_earlier_run):
    record = register_service(db, "cn1", starting=False)
    auto_disable(db, record.id, left_by_earlier_run)

    assert register_service(db, "cn1").disabled_reason == AUTO_STARTING
    assert finish_starting(db, record.id) is True
    assert not load_service(db, "cn1").disabled


def test_replace_auto_reason_only_replaces_that_reason(db):
    record = register_service(db, "cn1")
    assert replace_auto_reason(db, record.id, AUTO_STARTING,
                               "AUTO: start-up failed: no libvirt") is True
    assert load_service(db, "cn1").disabled_reason == "AUTO: start-up failed: no libvirt"

    in_transaction(db, set_disabled, "cn1", registry.COMPUTE_BINARY, True, "maintenance")
    assert replace_auto_reason(db, record.id, "AUTO: start-up failed: no libvirt",
                               "AUTO: start-up failed: again") is False
    after = load_service(db, "cn1")
    assert after.disabled and after.disabled_reason == "maintenance"


@pytest.mark.parametrize("reason", ["maintenance", "AUTO:no-space", ""], ids=str)
def test_automatic_reason_must_carry_the_prefix(db, reason):
    record = register_service(db, "cn1", starting=False)
    with pytest.raises(ValueError, match="must start with 'AUTO: '"):
        auto_disable(db, record.id, reason)
    assert not load_service(db, "cn1").disabled


def test_register_after_delete_creates_a_new_row(db):
    first = register_service(db, "cn1")
    in_transaction(db, delete_service, "cn1", registry.COMPUTE_BINARY)
    assert load_service(db, "cn1") is None

    second = register_service(db, "cn1")
    assert second.id != first.id
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Service)
                              .where(Service.host == "cn1")) == 2


# -- one agent per host: the claim at start-up -------------------------------------------------
LONG_AGO = dt.datetime(2020, 1, 1)
A_ID, B_ID = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"


def started(db, agent_id):
    record = register_service(db, "cn1", agent_id=agent_id, service_down_time=60)
    assert Heartbeat(db, record.id, 10, agent_id=agent_id).beat()
    return record


def test_second_agent_with_another_identity_is_refused_and_changes_nothing(db):
    first = started(db, A_ID)
    finish_starting(db, first.id)
    [before] = live_rows(db, "cn1")
    with pytest.raises(StartupError, match=f"host 'cn1' is already run by another agent "
                                           f"\\(identity {A_ID}, since "):
        register_service(db, "cn1", agent_id=B_ID, service_down_time=60)
    [after] = live_rows(db, "cn1")
    assert (after.last_seen_by, after.report_count, after.disabled, after.started_at) == (
        A_ID, before.report_count, False, before.started_at)


def test_restart_with_the_same_identity_is_not_refused(db):
    first = started(db, A_ID)
    again = register_service(db, "cn1", agent_id=A_ID, service_down_time=60)
    assert again.id == first.id and again.disabled_reason == AUTO_STARTING


def test_row_quiet_past_service_down_time_is_taken_over(db, caplog):
    first = started(db, A_ID)
    with db.begin() as conn:
        conn.execute(update(Service).where(Service.id == first.id)
                     .values(last_seen_up=LONG_AGO, started_at=LONG_AGO))
    with caplog.at_level("WARNING", logger="agent.service_owner"):
        record = register_service(db, "cn1", agent_id=B_ID, service_down_time=60)
    [row] = live_rows(db, "cn1")
    assert record.id == first.id and row.last_seen_by == B_ID and row.started_at > LONG_AGO
    assert any(f"last run by agent {A_ID}" in r.getMessage() for r in caplog.records)


def test_running_agent_logs_once_when_another_beats_into_its_row(db, caplog):
    record = started(db, A_ID)
    mine = Heartbeat(db, record.id, 10, agent_id=A_ID, host="cn1")
    intruder = Heartbeat(db, record.id, 10, agent_id=B_ID)
    with caplog.at_level("INFO", logger="agent.heartbeat"):
        assert intruder.beat() and mine.beat() and intruder.beat() and mine.beat()
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 2  # one each, not one per beat
        assert errors[-1].getMessage().endswith(
            f"another agent (identity {B_ID}) is beating into the service row of host 'cn1' "
            f"(id {record.id}), which this agent (identity {A_ID}) runs: two agents are "
            "running as one host; stop the one that should not run")
        assert mine.beat()  # the intruder stopped
    assert "no other agent beats into host cn1" in caplog.records[-1].getMessage()
    [row] = live_rows(db, "cn1")
    assert row.last_seen_by == A_ID and row.report_count == 6


def test_two_agents_starting_at_once_one_is_refused(any_db):
    # Both read the row free (never claimed); the compare-and-set lets one claim it.
    record = register_service(any_db, "cn1", starting=False)
    outcomes: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def start(agent_id):
        db = make_database(any_db.engine.url.render_as_string(hide_password=False))
        try:
            barrier.wait(10)
            outcomes[agent_id] = register_service(db, "cn1", agent_id=agent_id,
                                                  service_down_time=60).id
        except StartupError as exc:
            outcomes[agent_id] = exc
        finally:
            db.dispose()

    threads = [threading.Thread(target=start, args=(i,)) for i in (A_ID, B_ID)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    refused = [i for i, o in outcomes.items() if isinstance(o, StartupError)]
    claimed = [i for i, o in outcomes.items() if o == record.id]
    assert len(refused) == 1 and len(claimed) == 1, outcomes
    [row] = live_rows(any_db, "cn1")
    assert row.last_seen_by == claimed[0]
