"""`agent fleet` through a database outage: the live agents the service list shows down while
their own beats fail are an outage's downs, counted apart; only a down no failed beat explains
is false and fails the run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import update

from agent.db import migrate
from agent.db.engine import make_database
from agent.db.models import Service
from agent.fleet.poller import ServicesPoller
from agent.fleet.runner import FleetOptions, FleetRunner
from agent.heartbeat import Heartbeat
from agent.registry import register_service
from tests.functional.test_fleet import fleet_conf

LONG_AGO = dt.datetime(2020, 1, 1)
DEADLINE = 60.0


def wait_for(condition, what):
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_poller_counts_explained_downs_apart_from_false_ones(sqlite_db):
    for host in ("beating", "failing", "not-live"):
        record = register_service(sqlite_db, host)
        assert Heartbeat(sqlite_db, record.id, 10).beat()
    with sqlite_db.engine.begin() as conn:
        conn.execute(update(Service).values(last_seen_up=LONG_AGO))
    explained = {"failing": "its beats failed (cannot reach the database)"}
    poller = ServicesPoller(sqlite_db, lambda: ["beating", "failing"], 60, 1,
                            explain=lambda host, _since: explained.get(host))

    assert poller.poll() == 1
    assert (poller.false_downs, poller.outage_downs) == (1, 1)


@pytest.mark.postgresql
def test_fleet_through_a_database_outage_has_no_false_down(throwaway_postgresql, tmp_path):
    server = throwaway_postgresql
    db = make_database(server.url)
    migrate.upgrade(db)
    db.dispose()
    conf = fleet_conf(tmp_path, server.url)  # report_interval 1 s, service_down_time 3 s
    runner = FleetRunner(conf, FleetOptions(count=10, instances_per_host=1, duration=None,
                                            ramp=0.5, poll_interval=0.2,
                                            progress_interval=1.0, seed=3))
    reports = []
    thread = threading.Thread(target=lambda: reports.append(runner.run()), daemon=True)
    # An error in the run (the thread's exception) shows as a timeout below, with the log.
    thread.start()
    try:
        wait_for(lambda: runner.started == 10, "all agents started")
        wait_for(lambda: runner.poller.polls >= 3, "polls")
        server.stop()
        failed = runner.beat_totals()[1]
        # Longer than service_down_time: every agent's row goes stale.
        wait_for(lambda: runner.beat_totals()[1] >= failed + 10 * 5, "beats failing")
        server.start()
        wait_for(lambda: runner.poller.outage_downs > 0, "the poller seeing the outage")
        polls = runner.poller.polls
        wait_for(lambda: runner.poller.polls >= polls + 10, "polls after the outage")
    finally:
        if server.is_running() is False:
            server.start()
        runner.request_stop("test")
        thread.join(DEADLINE)
    assert not thread.is_alive()
    [report] = reports
    assert report.outage_downs > 0
    assert report.false_downs == 0
    assert report.exit_status == 0
    assert "live agents seen down: 0 (and " in report.format_table()
    assert dataclasses.replace(report, false_downs=1).exit_status == 1
