"""The watchdog covers every worker thread of the host work: the lifecycle-event worker as well
as the RPC consumer, the heartbeat and the periodic jobs."""

from __future__ import annotations

from fakevirt.scenario import generate_scenario
from tests.functional.compute_helpers import HOST, make_host, seeded


def test_a_dead_lifecycle_event_worker_makes_the_host_work_unhealthy(tmp_path, sqlite_db):
    scenario = seeded(sqlite_db, generate_scenario(3, hostname=HOST))
    host = make_host(tmp_path, sqlite_db, scenario)
    try:
        host.start()
        assert host.is_healthy()
        host.manager.power_sync.stop_worker()  # the worker thread ends
        assert not host.is_healthy()
    finally:
        host.stop()


def test_without_lifecycle_events_there_is_no_worker_to_watch(tmp_path, sqlite_db):
    scenario = seeded(sqlite_db, generate_scenario(3, hostname=HOST))
    host = make_host(tmp_path, sqlite_db, scenario,
                     workarounds__handle_virt_lifecycle_events=False)
    try:
        host.start()
        assert host.is_healthy()
    finally:
        host.stop()
