"""`agent fleet`: a small fleet on SQLite and PostgreSQL, every agent registered, beating and
audited through the single agent's code, never shown down; the report; Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest
from sqlalchemy import func, select

from agent.config import RawValue, load_config
from agent.db.engine import make_database
from agent.db.models import ComputeNode, Instance, Service
from agent.fleet.beat_scheduler import next_due
from agent.fleet.latency import LatencyHistogram
from agent.fleet.report import FleetReport
from agent.fleet.runner import FleetOptions, FleetRunner
from agent.fleet.simulated import host_names
from tests.agent_process import AgentProcess, wait_for, write_config

N, M = 20, 2


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.sqlite"  # the fleet creates the schema itself
    request.applymarker(pytest.mark.postgresql)
    return request.getfixturevalue("postgresql_url")


def fleet_conf(tmp_path, url: str, **values):
    raw = {("DEFAULT", "report_interval"): "1", ("DEFAULT", "service_down_time"): "3",
           ("DEFAULT", "update_resources_interval"): "1",
           ("DEFAULT", "periodic_fuzzy_delay"): "0",
           ("DEFAULT", "state_path"): str(tmp_path / "state"), ("database", "connection"): url}
    raw.update({("DEFAULT", k): str(v) for k, v in values.items()})
    return load_config(None, {k: RawValue(v, "test") for k, v in raw.items()})


def rows(url: str):
    db = make_database(url)
    try:
        with db.sessions() as session:
            services = {s.host: s.report_count for s in session.scalars(select(Service))}
            nodes = session.scalar(select(func.count()).select_from(ComputeNode))
            instances = dict(session.execute(
                select(Instance.host, func.count()).group_by(Instance.host)).all())
        return services, nodes, instances
    finally:
        db.dispose()


def test_small_fleet_registers_beats_and_audits_every_agent_with_no_false_down(
        tmp_path, fleet_db_url):
    conf = fleet_conf(tmp_path, fleet_db_url)
    runner = FleetRunner(conf, FleetOptions(count=N, instances_per_host=M, duration=5.0,
                                            ramp=0.5, poll_interval=0.2, progress_interval=1.0,
                                            seed=7, keep=True))
    report = runner.run()

    hosts = host_names("fleet-", N)
    services, nodes, instances = rows(fleet_db_url)
    assert sorted(services) == hosts
    assert all(count > 1 for count in services.values()), services
    assert nodes == N
    assert instances == {host: M for host in hosts}
    assert report.agents_started == N and report.agents_failed == 0
    assert report.polls > 0 and report.false_downs == 0
    assert report.errors == 0
    assert report.beats_ok >= 2 * N
    assert report.audits > N  # the start-up audit is not counted: these are periodic ones
    # One UPDATE per beat: what the database pays per host and interval.
    assert report.statements_per_beat == 1.0
    assert report.statements_per_audit is not None and report.statements_per_audit >= 3
    assert report.cleanup == "kept (--keep)"
    assert sorted(os.listdir(tmp_path / "state" / "fleet")) == hosts


def test_fleet_removes_its_rows_and_state_directories_at_the_end(tmp_path, fleet_db_url):
    from agent.registry import register_service

    conf = fleet_conf(tmp_path, fleet_db_url)
    db = make_database(fleet_db_url)
    try:
        from agent.db import migrate

        migrate.ensure_schema(db)
        register_service(db, "real-host", starting=False)  # not the fleet's: it stays
    finally:
        db.dispose()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "mine.txt").write_text("not the fleet's")

    report = FleetRunner(conf, FleetOptions(count=3, instances_per_host=2, duration=2.0,
                                            ramp=0.1, poll_interval=0.2,
                                            progress_interval=1.0)).run()

    assert report.agents_started == 3
    services, nodes, instances = rows(fleet_db_url)
    assert (sorted(services), nodes, instances) == (["real-host"], 0, {})
    assert os.listdir(tmp_path / "state") == ["mine.txt"]  # the fleet's directory is gone
    assert report.cleanup == ("removed 3 service rows, 3 compute nodes, 6 instances and 3 "
                              "state directories")
    assert "cleanup" in report.format_table() and report.cleanup in report.format_table()


def test_report_has_every_field(tmp_path):
    url = f"sqlite:///{tmp_path}/fleet.sqlite"
    report = FleetRunner(fleet_conf(tmp_path, url),
                         FleetOptions(count=3, instances_per_host=1, duration=3.0, ramp=0.1,
                                      poll_interval=0.2, progress_interval=1.0)).run()
    data = json.loads(report.to_json())
    assert set(data) == {f.name for f in dataclasses.fields(FleetReport)}
    optional = {"statements_per_audit", "job_lateness_p99_s", "rpc_messages_left"}
    assert [k for k, v in data.items() if v is None and k not in optional] == []
    assert data["target_beats_per_second"] == 3.0
    for label in ("agents", "beats/s", "beat lateness", "statements", "services list"):
        assert label in report.format_table()
    assert "3 of 3 started, 1 instance each" in report.format_table()


def test_fleet_command_stops_on_sigint_with_the_report(tmp_path):
    url = f"sqlite:///{tmp_path}/fleet.sqlite"
    config = write_config(tmp_path, database_url=url, report_interval=1, service_down_time=3)
    report_path = tmp_path / "report.json"
    proc = AgentProcess(config, tmp_path / "fleet.log",
                        args=["fleet", "--count", str(N), "--instances-per-host", str(M),
                              "--ramp", "0.5", "--poll-interval", "0.2",
                              "--progress-interval", "1", "--report", str(report_path)])
    try:
        def all_beating():
            services, _, _ = rows(url) if (tmp_path / "fleet.sqlite").exists() else ({}, 0, {})
            return len(services) == N and all(c > 1 for c in services.values())

        assert wait_for(lambda: _quiet(all_beating)), proc.log_text()
        proc.send(signal.SIGINT)
        assert proc.wait() == 0, proc.log_text()
        out = proc.proc.stdout.read().decode()
    finally:
        proc.stop()
    assert "live agents seen down: 0" in out
    assert "stopped by       SIGINT" in out
    assert f"removed {N} service rows, {N} compute nodes, {N * M} instances" in out
    assert rows(url) == ({}, 0, {})
    data = json.loads(report_path.read_text())
    assert data["stopped_by"] == "SIGINT"
    assert data["agents_started"] == N and data["false_downs"] == 0


def _quiet(condition):
    try:
        return condition()
    except Exception:  # noqa: BLE001 - the schema may not be there yet
        return False


def test_bad_option_is_one_clear_error(tmp_path, capsys):
    from agent.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["fleet", "--count", "0", "--db", f"sqlite:///{tmp_path}/x.sqlite"])
    assert exited.value.code == 2
    assert "argument --count: '0': expected an integer from 1 to" in capsys.readouterr().err


@pytest.mark.parametrize("due, interval, finished, jitter, expected", [
    pytest.param(100.0, 10.0, 100.2, 0.0, 110.0, id="on-time"),
    pytest.param(100.0, 10.0, 100.2, 0.5, 110.5, id="jittered"),
    pytest.param(100.0, 10.0, 113.0, 0.0, 113.0, id="overran-no-catch-up-burst"),
])
def test_next_due(due, interval, finished, jitter, expected):
    assert next_due(due, interval, finished, jitter) == expected


def test_latency_percentiles_of_many_samples():
    histogram = LatencyHistogram()
    for i in range(1000):
        histogram.add(i / 1000)  # 0 .. 0.999 s
    histogram.add(42.0)
    assert histogram.percentile(0.5) == pytest.approx(0.5, abs=0.002)
    assert histogram.percentile(0.99) == pytest.approx(0.99, abs=0.002)
    assert histogram.percentile(1.0) == 42.0 and histogram.max == 42.0
    assert LatencyHistogram().percentile(0.99) is None


def test_failed_simulated_start_stops_it_and_says_why_on_the_row(tmp_path):
    # As the single agent: a host whose start-up failed is not left 'AUTO: starting'.
    from agent.db import migrate
    from agent.fleet.beat_scheduler import Task
    from agent.fleet.simulated import SimulatedAgent, agent_conf
    from fakevirt.scenario import generate_scenario

    url = f"sqlite:///{tmp_path}/fleet.sqlite"
    conf = fleet_conf(tmp_path, url)
    db = make_database(url)
    try:
        migrate.ensure_schema(db)
        agent = SimulatedAgent(agent_conf(conf, "fleet-00001"), db,
                               generate_scenario(0, hostname="fleet-00001"), str(tmp_path / "a"))
        assert agent.register()
        agent.tasks.append(Task("beat", lambda: None, 10.0))
        agent.start_failed("the hypervisor said no")
        assert all(task.cancelled for task in agent.tasks)
        with db.sessions() as session:
            row = session.scalars(select(Service)).one()
        assert row.disabled
        assert row.disabled_reason == "AUTO: start-up failed: the hypervisor said no"
    finally:
        db.dispose()
