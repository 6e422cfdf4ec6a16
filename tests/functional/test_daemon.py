"""The agent's lifecycle with real parts: the agent process, a real notify socket, SQLite files.

Process tests run `python -m agent` and talk to it only as systemd and an operator would: the
notify socket, signals, the exit status, stderr and the database.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from sqlalchemy import update

from agent.config import load_config
from agent.db.engine import make_database
from agent.db.models import Service
from agent.errors import DriverError
from agent.registry import AUTO_STARTING
from agent.periodic import PeriodicJob
from agent.service import AgentService
from agent.systemd import Notifier
from tests.agent_process import (DEADLINE, AgentProcess, NotifySocket, service_row, wait_for,
                                 write_config)


@pytest.fixture
def notify_socket(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []

    def start(config, log_path, **kwargs) -> AgentProcess:
        agent = AgentProcess(config, log_path, **kwargs)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/state/agent.sqlite"


def test_notify_sequence_end_to_end(tmp_path, notify_socket, agents):
    config = write_config(tmp_path)
    agent = agents(config, tmp_path / "agent.log",
                   env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "2000000"})

    ready = notify_socket.receive_until("READY=1")
    assert ready is not None, agent.log_text()
    # The first beat is in the database before READY, and start-up has lifted AUTO: starting.
    row = service_row(sqlite_url(tmp_path))
    assert row is not None and row.report_count >= 1
    assert (row.disabled, row.disabled_reason) == (False, None)

    watchdog = notify_socket.receive_until("WATCHDOG=1")
    assert watchdog is not None, agent.log_text()
    agent.send(signal.SIGTERM)
    stopping = notify_socket.receive_until("STOPPING=1")
    assert stopping is not None, agent.log_text()
    assert agent.wait() == 0

    notes = notify_socket.received
    assert {note.pid for note in notes} == {agent.pid}
    kinds = [line.split("=", 1)[0] for note in notes for line in note.lines]
    first = {kind: kinds.index(kind) for kind in ("STATUS", "READY", "WATCHDOG", "STOPPING")}
    assert first["STATUS"] < first["READY"] < first["WATCHDOG"] < first["STOPPING"]
    statuses = [line for note in notes for line in note.lines if line.startswith("STATUS=")]
    assert "STATUS=registering the service" in statuses
    assert "STATUS=running" in statuses


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_agent_with_status_zero(signum, tmp_path, notify_socket, agents):
    agent = agents(write_config(tmp_path), tmp_path / "agent.log",
                   env={"NOTIFY_SOCKET": notify_socket.path})
    assert notify_socket.receive_until("READY=1") is not None, agent.log_text()
    agent.send(signum)
    assert agent.wait(DEADLINE) == 0
    log = agent.log_text()
    assert f"{signal.Signals(signum).name}: stopping" in log
    assert "compute agent stopped" in log


def test_heartbeat_keeps_beating_while_running(tmp_path, notify_socket, agents):
    agent = agents(write_config(tmp_path), tmp_path / "agent.log",
                   env={"NOTIFY_SOCKET": notify_socket.path})
    assert notify_socket.receive_until("READY=1") is not None, agent.log_text()
    url = sqlite_url(tmp_path)
    count = service_row(url).report_count
    assert wait_for(lambda: service_row(url).report_count >= count + 2), agent.log_text()


def test_unreachable_database_fails_with_one_line_and_no_password(tmp_path, agents):
    config = write_config(tmp_path,
                          database_url="postgresql+psycopg://nova:s3cr3t-pw@127.0.0.1:1/nova")
    agent = agents(config, tmp_path / "agent.log")
    status = agent.wait(DEADLINE)
    stderr = agent.log_text()
    assert status != 0
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("agent: error: ")
    assert "127.0.0.1" in last
    assert "s3cr3t-pw" not in stderr
    assert "Traceback" not in stderr


def test_failed_init_host_of_a_new_host_leaves_no_row(tmp_path, agents):
    # A host that never ran is checked (driver init_host, node identity) before its row is
    # created: a refused start leaves nothing in the registry.
    missing = tmp_path / "missing-node.xml"
    agent = agents(write_config(tmp_path, compute_driver="libvirt"), tmp_path / "agent.log",
                   args=["--connection-uri", f"test://{missing}"])
    assert agent.wait(DEADLINE) != 0
    last = agent.log_text().strip().splitlines()[-1]
    assert last.startswith("agent: error: ")
    assert service_row(sqlite_url(tmp_path)) is None
    assert not (tmp_path / "state" / "compute_id").exists()


def test_failed_init_host_of_a_known_host_leaves_its_row_as_it_was(tmp_path, agents):
    from tests.conftest import import_libvirt
    from tests.libvirt_xml import write_node

    import_libvirt()
    node = write_node(tmp_path, 0)
    config = write_config(tmp_path, compute_driver="libvirt")
    first = agents(config, tmp_path / "first.log", args=["--once", "--connection-uri", node.uri])
    assert first.wait(DEADLINE) == 0, first.log_text()
    before = service_row(sqlite_url(tmp_path))
    node.path.unlink()  # libvirt's test driver cannot open its node any more
    agent = agents(config, tmp_path / "agent.log", args=["--connection-uri", node.uri])
    assert agent.wait(DEADLINE) != 0
    assert agent.log_text().strip().splitlines()[-1].startswith("agent: error: ")
    after = service_row(sqlite_url(tmp_path))
    assert (after.disabled, after.disabled_reason, after.report_count, after.last_seen_up) == (
        before.disabled, before.disabled_reason, before.report_count, before.last_seen_up)


# -- in-process lifecycle with a host work of our own -----------------------------------------

class RecordingHostWork:
    """A HostWork that records calls; `start()` can fail or block until stopped."""

    def __init__(self, *, fail: Exception | None = None, block: bool = False,
                 jobs: tuple[PeriodicJob, ...] = ()):
        self.fail = fail
        self.block = block
        self.jobs = jobs
        self.calls: list[str] = []
        self.stopped = threading.Event()
        self.started = threading.Event()

    def prepare(self) -> str | None:
        return None

    def registered(self, service) -> None:
        pass

    def start(self) -> None:
        self.calls.append("start")
        self.started.set()
        if self.block:
            self.stopped.wait(DEADLINE)
        if self.fail is not None:
            raise self.fail

    def periodic_jobs(self):
        self.calls.append("periodic_jobs")
        return self.jobs

    def serve(self) -> None:
        self.calls.append("serve")

    def is_healthy(self) -> bool:
        return True

    def stop(self) -> None:
        self.calls.append("stop")
        self.stopped.set()

    def report(self) -> object:
        return {"host": "test-host", "calls": list(self.calls)}


def make_service(tmp_path, work=None, **kwargs) -> AgentService:
    conf = load_config(str(write_config(tmp_path)))
    factory = (lambda conf, db, record, dry_run: work) if work is not None else None
    return AgentService(conf, notifier=kwargs.pop("notifier", Notifier(None)),
                        host_work_factory=factory, **kwargs)


def test_failed_host_work_leaves_the_service_disabled_with_the_reason(tmp_path):
    work = RecordingHostWork(fail=DriverError("libvirt 6.0.0 is older than 7.0.0"))
    service = make_service(tmp_path, work)
    with pytest.raises(DriverError):
        service.run_once()
    row = service_row(sqlite_url(tmp_path))
    assert row.disabled is True
    assert row.disabled_reason == "AUTO: start-up failed: libvirt 6.0.0 is older than 7.0.0"
    assert work.calls == ["start", "stop"]


def test_failed_start_keeps_an_operator_disable(tmp_path):
    make_service(tmp_path).run_once()  # creates the schema and the row
    url = sqlite_url(tmp_path)
    db = make_database(url)
    try:
        with db.engine.begin() as conn:
            conn.execute(update(Service).values(disabled=True, disabled_reason="maintenance"))
    finally:
        db.dispose()
    with pytest.raises(DriverError):
        make_service(tmp_path, RecordingHostWork(fail=DriverError("no hypervisor"))).run_once()
    row = service_row(url)
    assert (row.disabled, row.disabled_reason) == (True, "maintenance")


def test_once_returns_the_host_work_report_and_enables_the_service(tmp_path):
    work = RecordingHostWork()
    report = make_service(tmp_path, work).run_once()
    assert report == {"host": "test-host", "calls": ["start"]}
    assert work.calls == ["start", "stop"]
    row = service_row(sqlite_url(tmp_path))
    assert row.report_count == 1 and row.disabled is False


def test_stop_during_a_long_init_host_is_prompt(tmp_path):
    work = RecordingHostWork(block=True)
    service = make_service(tmp_path, work)
    threading.Thread(target=lambda: (work.started.wait(DEADLINE),
                                     service.request_stop("test")), daemon=True).start()
    assert service.start() is False
    service.stop()
    assert "stop" in work.calls
    row = service_row(sqlite_url(tmp_path))
    assert row.disabled_reason == AUTO_STARTING  # it never finished starting


def test_periodic_jobs_of_the_host_work_run_and_stop_with_the_agent(tmp_path):
    runs: list[int] = []
    work = RecordingHostWork(jobs=(PeriodicJob("update_available_resource",
                                               lambda: runs.append(1), 0.2, 0),))
    service = make_service(tmp_path, work)
    assert service.start() is True
    assert wait_for(lambda: len(runs) >= 2)
    assert service.is_healthy()
    service.stop()
    count = len(runs)
    assert work.calls == ["start", "periodic_jobs", "serve", "stop"]
    assert not service.periodic.is_healthy()
    time.sleep(3 * 0.2)  # three more intervals: a job still scheduled would have run
    assert len(runs) == count


def test_watchdog_is_withheld_while_unhealthy(tmp_path, notify_socket):
    service = make_service(tmp_path, notifier=Notifier(notify_socket.path),
                           watchdog_seconds=0.4)
    assert service.start() is True
    try:
        assert notify_socket.receive_until("WATCHDOG=1") is not None
        service.periodic.shutdown(wait=True)  # the periodic jobs die: unhealthy
        # Drain what was sent before the health check saw it (a ping every 0.2 s would never
        # end: bounded), then expect silence.
        deadline = time.monotonic() + 5.0
        while notify_socket.receive(timeout=1.0) is not None:
            assert time.monotonic() < deadline, "WATCHDOG=1 still sent while unhealthy"
        assert notify_socket.receive(timeout=1.5) is None
    finally:
        service.stop()


def test_failed_start_in_daemon_mode_releases_the_host_work_and_heartbeat(tmp_path):
    work = RecordingHostWork(fail=DriverError("hypervisor gone"))
    service = make_service(tmp_path, work)
    with pytest.raises(DriverError):
        service.start()
    assert work.calls == ["start", "stop"]
    assert not service.heartbeat.is_healthy()
    row = service_row(sqlite_url(tmp_path))
    assert row.disabled_reason == "AUTO: start-up failed: hypervisor gone"
