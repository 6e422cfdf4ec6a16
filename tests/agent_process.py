"""Running the real agent as a child process in tests: config file, notify socket, the service
row as the database shows it.

Used by the functional and end-to-end lifecycle tests. The agent runs as
`<python> -m agent --config FILE`, optionally under a wrapper command (faketime), with its log
(stderr) in a file and NOTIFY_SOCKET pointing at a `NotifySocket` the test owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from sqlalchemy import select

from agent.db.engine import make_database
from agent.db.models import ComputeNode, Service

DEADLINE = 60.0  # seconds: generous, the test machine is shared
REPO_ROOT = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], object], deadline: float = DEADLINE,
              step: float = 0.05) -> object:
    """Poll `condition` until it returns something truthy (returned) or the deadline passes
    (returns its last value)."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value or time.monotonic() >= end:
            return value
        time.sleep(step)


def bounded(call: Callable[[], object], deadline: float = DEADLINE) -> object:
    """`call()` on a thread of its own: its result (or its exception), or AssertionError when
    it is still running after `deadline` seconds (a hung call, where a bounded one was due)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), f"{call} still blocked after {deadline:g} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def write_config(directory: Path, *, database_url: str | None = None, host: str = "test-host",
                 scenario: Path | None = None, **defaults: object) -> Path:
    """An agent.conf with a short report_interval, no fuzzy delay and state in `directory`;
    with `scenario`, fakevirt reads that scenario file."""
    values = {"host": host, "state_path": str(directory / "state"), "report_interval": 1,
              "service_down_time": 3, "periodic_fuzzy_delay": 0}
    values.update(defaults)
    lines = ["[DEFAULT]"] + [f"{key} = {value}" for key, value in values.items()]
    url = database_url or f"sqlite:///{directory}/state/agent.sqlite"
    lines += ["", "[database]", f"connection = {url}", "connect_timeout = 2"]
    if scenario is not None:
        lines += ["", "[fakevirt]", f"scenario = {scenario}"]
    path = directory / "agent.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Notification:
    pid: int
    text: str

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket; it reads the sender's
    pid from the kernel-supplied credentials (SO_PASSCRED / SCM_CREDENTIALS)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.received: list[Notification] = []

    def receive(self, timeout: float = DEADLINE) -> Notification | None:
        self.sock.settimeout(timeout)
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(
                4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            return None
        pid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:struct.calcsize("3i")])
        note = Notification(pid, data.decode("utf-8"))
        self.received.append(note)
        return note

    def receive_until(self, line: str, deadline: float = DEADLINE) -> Notification | None:
        """Receive until a datagram carries `line`; None if the deadline passes first."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            note = self.receive(max(0.1, end - time.monotonic()))
            if note is not None and line in note.lines:
                return note
        return None

    def close(self) -> None:
        self.sock.close()


class AgentProcess:
    """One agent child process; its stderr (the log) goes to `log_path`.

    With a `wrapper` (faketime), `pid` is the wrapper's: the agent is its child, and its own
    pid is the sender pid of its notifications (`Notification.pid`).
    """

    def __init__(self, config: Path, log_path: Path, *, args: Sequence[str] = (),
                 env: dict[str, str] | None = None, wrapper: Sequence[str] = ()):
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        full_env["PYTHONPATH"] = str(REPO_ROOT)
        full_env.update(env or {})
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.command = [*wrapper, sys.executable, "-m", "agent", "--config", str(config), *args]
        # A process group of its own: stop() ends the agent with whatever it runs under (the
        # faketime wrapper's child would otherwise outlive the test).
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._log,
                                     env=full_env, cwd=str(REPO_ROOT), start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Make sure the process and everything it started are gone (test clean-up)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@contextlib.contextmanager
def ready_agent(config: Path, directory: Path, *, name: str = "agent",
                env: dict[str, str] | None = None) -> Iterator[AgentProcess]:
    """An agent daemon on `config` past READY=1 (start-up done, its compute queue declared),
    its log in `directory/<name>.log`; it is stopped when the block ends."""
    notify = NotifySocket(directory / f"notify-{name}")
    agent = AgentProcess(config, directory / f"{name}.log",
                         env={"NOTIFY_SOCKET": notify.path, **(env or {})})
    try:
        assert notify.receive_until("READY=1") is not None, agent.log_text()
        yield agent
    finally:
        agent.stop()
        notify.close()


def host_scenario(directory: Path, host: str) -> Path:
    """A fakevirt scenario file for `host` with room for a few guests (8 vCPUs, 16 GiB,
    200 GiB) and none yet."""
    path = directory / "scenario.toml"
    path.write_text(f'[host]\nhostname = "{host}"\nvcpus = 8\nmemory_mb = 16384\n'
                    "local_gb = 200\n", encoding="utf-8")
    return path


def compute_node_saved(directory: Path) -> bool:
    """Whether the agent whose SQLite state is under `directory/state` has saved its compute
    node (its first audit done)."""
    db = make_database(f"sqlite:///{directory}/state/agent.sqlite")
    try:
        with db.sessions() as session:
            return session.execute(select(ComputeNode.id)).first() is not None
    finally:
        db.dispose()

def service_row(url: str, host: str = "test-host") -> Service | None:
    """The live service row of `host` as the database shows it now."""
    db = make_database(url)
    try:
        with db.sessions() as session:
            return session.scalars(select(Service).where(Service.host == host,
                                                         Service.deleted == 0)).one_or_none()
    except Exception:  # noqa: BLE001 - not there yet (schema being created) reads as no row
        return None
    finally:
        db.dispose()


def agent_command(*args: str, env: dict[str, str] | None = None,
                  timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    """Run a one-shot `agent ...` command (e.g. `services list`) and capture its output."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, env=full_env, cwd=str(REPO_ROOT), timeout=timeout)


def listed_service(config, host: str) -> dict | None:
    """The host's entry in `agent services list --format json`, or None (no such service, or
    the command failed)."""
    result = agent_command("services", "list", "--config", str(config), "--host", host,
                           "--format", "json")
    if result.returncode != 0:
        return None
    services = json.loads(result.stdout)["services"]
    return services[0] if services else None
