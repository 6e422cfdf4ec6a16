"""A private, throw-away PostgreSQL server for tests that stop and restart the database.

tests/conftest.py makes the fixture available to every test::

    def test_something(throwaway_postgresql):
        url = throwaway_postgresql.url  # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        throwaway_postgresql.stop()     # the outage
        throwaway_postgresql.start()    # same port, same data

The server runs from the Debian binaries (/usr/lib/postgresql/<version>/bin), with its data
directory, log and unix socket in a fresh directory removed afterwards; it listens on a free port
on 127.0.0.1 only. initdb refuses to run as root, so as root every server command runs as the
`postgres` OS user (runuser). Without the binaries the test is skipped (failed under CI).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from tests.conftest import require_tier

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
START_TIMEOUT_SECONDS = 60


def find_pg_bindir() -> str | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    candidates = [d for d in glob.glob(PG_BIN_GLOB) if os.path.exists(os.path.join(d, "initdb"))]
    if not candidates:
        return None

    def version(path: str) -> tuple[int, ...]:
        name = os.path.basename(os.path.dirname(path))
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    return max(candidates, key=version)


def unavailable_reason() -> str | None:
    """Why a throw-away server cannot run here, or None when it can."""
    if find_pg_bindir() is None:
        return f"no PostgreSQL server binaries ({PG_BIN_GLOB}/initdb)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (initdb refuses root)"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} OS user to run initdb"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgreSQL:
    """One private PostgreSQL server: `init()` once, then `start()` / `stop()` at will."""

    def __init__(self, bindir: str, *, port: int | None = None):
        self.bindir = bindir
        self.port = port or free_port()
        self.base = tempfile.mkdtemp(prefix="agent-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.socket_dir = os.path.join(self.base, "socket")
        self.log_path = os.path.join(self.base, "server.log")
        self._as_root = os.geteuid() == 0
        os.makedirs(self.socket_dir)
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.base, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        command = [os.path.join(self.bindir, tool), *args]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.base,
                                timeout=START_TIMEOUT_SECONDS + 30)
        if result.returncode != 0:
            log = ""
            if os.path.exists(self.log_path):
                with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                    log = fh.read()[-2000:]
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stderr.strip()}\n{log}")
        return result

    def init(self) -> None:
        self._run("initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        """Start the server (same port and data as before) and wait until it accepts
        connections."""
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", self.datadir, "-o", options, "-l", self.log_path, "-w",
                  "-t", str(START_TIMEOUT_SECONDS), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' disconnects clients at once, 'immediate' is like a crash."""
        self._run("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop")

    def server_pids(self) -> list[int]:
        """The postmaster first, then every process it forked (backends, checkpointer, ...)."""
        with open(os.path.join(self.datadir, "postmaster.pid"), encoding="ascii") as fh:
            postmaster = int(fh.readline())
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                                  text=True).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """SIGSTOP every server process (the postmaster first, so it forks no new one): the
        server keeps its sockets open and answers nothing, as a hung host would."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        for pid in self.server_pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # a backend that exited meanwhile

    def is_running(self) -> bool:
        command = [os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "status"]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        return subprocess.run(command, capture_output=True).returncode == 0

    def destroy(self) -> None:
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self.thaw()  # a test that failed while the server was frozen
        if os.path.exists(self.datadir) and self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def throwaway_postgresql(request):
    """A started private PostgreSQL server (ThrowawayPostgreSQL), destroyed after the test."""
    request.applymarker(pytest.mark.postgresql)
    reason = unavailable_reason()
    require_tier("postgresql", reason is None, reason or "")
    server = ThrowawayPostgreSQL(find_pg_bindir())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
