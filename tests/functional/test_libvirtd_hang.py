"""A hung libvirtd (SIGSTOP on a private daemon the test owns) is a lost libvirtd: calls on it
fail within the keepalive limit instead of blocking, the service is disabled with 'AUTO:
connection to libvirt lost' and enabled again once libvirtd answers (SIGCONT); an agent
stopped while libvirtd is hung exits before systemd's TimeoutStopSec."""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path

from agent import registry
from agent.errors import DriverError
from agent.compute.connection_guard import ConnectionGuard
from agent.virt.libvirt.driver import LibvirtDriver
from agent.virt.libvirt.host import Host
from tests.agent_process import (AgentProcess, NotifySocket, bounded, service_row, wait_for,
                                 write_config)
from tests.functional.test_libvirt_driver import make_conf
from tests.libvirtd_private import private_libvirtd  # noqa: F401 - fixture

DEADLINE = 60.0
LOST = "AUTO: connection to libvirt lost"
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "compute-agent.service"


def row(db, service_id):
    record = registry.load_service_by_id(db, service_id)
    return record.disabled, record.disabled_reason


def test_hung_libvirtd_is_lost_then_found_again(private_libvirtd, tmp_path, sqlite_db, caplog):
    caplog.set_level(logging.INFO, logger="agent.virt")
    uri = private_libvirtd.uri
    conf = make_conf(tmp_path, uri, keepalive_interval="1", keepalive_count="2")
    host = Host(uri, keepalive=(conf.libvirt.keepalive_interval, conf.libvirt.keepalive_count),
                reconnect_delays=(0.5,))
    driver = LibvirtDriver(conf, host=host)
    driver.init_host("hv")
    service = registry.register_service(sqlite_db, "hv", starting=False)
    driver.register_connection_listener(ConnectionGuard(sqlite_db, service.id))
    node = driver.get_available_nodes()[0]
    try:
        private_libvirtd.freeze()
        try:
            # A call made while libvirtd hangs fails within the keepalive limit.
            try:
                bounded(lambda: driver.get_available_resource(node), DEADLINE)
                raise AssertionError("a call on a hung libvirtd succeeded")
            except DriverError as exc:
                assert "keepalive" in str(exc) or "no connection to libvirt" in str(exc)
            assert wait_for(lambda: row(sqlite_db, service.id) == (True, LOST), DEADLINE)
        finally:
            private_libvirtd.thaw()
        assert wait_for(lambda: row(sqlite_db, service.id) == (False, None), DEADLINE)
        assert bounded(lambda: driver.get_available_resource(node), DEADLINE).vcpus > 0
    finally:
        bounded(driver.cleanup_host, DEADLINE)
    lost = [r.getMessage() for r in caplog.records if r.name == "agent.virt.libvirt.host"
            and "connection to libvirt lost" in r.getMessage()]
    restored = [r.getMessage() for r in caplog.records if "restored" in r.getMessage()]
    assert len(lost) == 1 and len(restored) == 1, (lost, restored)


def test_agent_disables_on_a_hung_libvirtd_and_stops_within_timeout_stop_sec(
        private_libvirtd, tmp_path):
    url = f"sqlite:///{tmp_path}/state/agent.sqlite"
    config = write_config(tmp_path, database_url=url, host="hung-host", compute_driver="libvirt",
                          update_resources_interval=1, sync_power_state_interval=1)
    with open(config, "a", encoding="utf-8") as fh:
        fh.write(f"\n[libvirt]\nconnection_uri = {private_libvirtd.uri}\n"
                 "keepalive_interval = 1\nkeepalive_count = 2\n")
    stop_limit = _timeout_stop_sec()
    notify = NotifySocket(tmp_path / "notify.sock")
    agent = AgentProcess(config, tmp_path / "agent.log", env={"NOTIFY_SOCKET": notify.path})
    try:
        assert notify.receive_until("READY=1") is not None, agent.log_text()

        private_libvirtd.freeze()
        try:
            assert wait_for(lambda: (r := service_row(url, "hung-host")) is not None
                            and r.disabled_reason == LOST), agent.log_text()
        finally:
            private_libvirtd.thaw()
        assert wait_for(lambda: not service_row(url, "hung-host").disabled), agent.log_text()
        log = agent.log_text()
        assert log.count("; reconnecting") == 1, log  # lost: said once
        assert log.count("restored after") == 1, log

        # Stopped while libvirtd hangs: out before systemd would kill it.
        private_libvirtd.freeze()
        try:
            agent.send(signal.SIGTERM)
            assert agent.wait(stop_limit) == 0, agent.log_text()
        finally:
            private_libvirtd.thaw()
    finally:
        agent.stop()
        notify.close()


def _timeout_stop_sec() -> float:
    match = re.search(r"^TimeoutStopSec=(\d+)s$", UNIT.read_text(encoding="utf-8"), re.M)
    return float(match.group(1))

