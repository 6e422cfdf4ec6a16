"""ConnectionGuard on a real SQLite database: the service follows the hypervisor connection,
and an operator's disable always wins."""

from __future__ import annotations

import logging
import time

from sqlalchemy import update

from agent import registry
from agent.db.models import Service
from agent.compute.connection_guard import ConnectionGuard


def _operator_disable(db, service_id, reason):
    with db.engine.begin() as conn:
        conn.execute(update(Service).where(Service.id == service_id)
                     .values(disabled=True, disabled_reason=reason))


def test_lost_connection_disables_and_reconnect_enables(sqlite_db):
    service = registry.register_service(sqlite_db, "compute-1", starting=False)
    guard = ConnectionGuard(sqlite_db, service.id)
    guard(False, "connection to libvirt lost: keepalive timeout")
    record = registry.load_service_by_id(sqlite_db, service.id)
    assert (record.disabled, record.disabled_reason) == (True, "AUTO: connection to libvirt lost")
    guard(True, "")
    record = registry.load_service_by_id(sqlite_db, service.id)
    assert (record.disabled, record.disabled_reason) == (False, None)


def test_operator_disable_before_the_loss_is_kept(sqlite_db):
    service = registry.register_service(sqlite_db, "compute-1", starting=False)
    _operator_disable(sqlite_db, service.id, "kernel upgrade")
    guard = ConnectionGuard(sqlite_db, service.id)
    guard(False, "connection to libvirt lost: end of file")
    guard(True, "")
    record = registry.load_service_by_id(sqlite_db, service.id)
    assert (record.disabled, record.disabled_reason) == (True, "kernel upgrade")


def test_database_failure_is_logged_not_raised(sqlite_db, caplog):
    service = registry.register_service(sqlite_db, "compute-1", starting=False)
    guard = ConnectionGuard(sqlite_db, service.id)
    with sqlite_db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE services")
    guard(False, "connection to libvirt lost: end of file")  # must not raise into the driver
    lines = [r for r in caplog.records if "recording the hypervisor connection" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "WARNING"
    assert "failing: OperationalError" in lines[0].getMessage()
    assert "services" in lines[0].getMessage()  # the database's own reason: no such table


def test_a_loss_the_database_could_not_take_is_recorded_once_it_is_back(sqlite_db, caplog):
    caplog.set_level(logging.INFO, logger="agent.compute.connection_guard")
    service = registry.register_service(sqlite_db, "compute-1", starting=False)
    guard = ConnectionGuard(sqlite_db, service.id, retry_delays=(0.05,))
    with sqlite_db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE services RENAME TO services_away")
    try:
        guard(False, "connection to libvirt lost: keepalive timeout")  # the database is out
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and guard.failed_attempts < 3:
            time.sleep(0.02)
        assert guard.failed_attempts >= 3  # still trying
        with sqlite_db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE services_away RENAME TO services")
        while time.monotonic() < deadline and not registry.load_service_by_id(
                sqlite_db, service.id).disabled:
            time.sleep(0.02)
        record = registry.load_service_by_id(sqlite_db, service.id)
        assert (record.disabled, record.disabled_reason) == (True,
                                                             "AUTO: connection to libvirt lost")
        while time.monotonic() < deadline and "recovered" not in caplog.text:
            time.sleep(0.02)
        assert caplog.text.count("recording the hypervisor connection state on service id "
                                 f"{service.id} recovered") == 1
    finally:
        guard.close()
