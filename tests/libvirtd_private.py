"""A private libvirtd for tests that freeze or kill the hypervisor daemon.

It is a session-mode libvirtd run as the unprivileged `nobody` user, with its sockets, runtime,
config and cache directories in a fresh directory (removed afterwards), so it shares nothing
with the machine's system libvirtd. The agent reaches libvirt's test hypervisor through it:
`test+unix:///default?socket=<dir>/run/libvirt/libvirt-sock` (the remote driver, its keepalive
and its close notifications, exactly as with qemu:///system)::

    def test_something(private_libvirtd):
        uri = private_libvirtd.uri
        private_libvirtd.freeze()   # SIGSTOP: the socket stays open, nothing answers
        private_libvirtd.thaw()     # SIGCONT

Needs root (to start the daemon as another user) and libvirtd; without them the test is skipped
(failed under CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests.conftest import import_libvirt, require_tier

DAEMON_USER = "nobody"
START_TIMEOUT_SECONDS = 60


def unavailable_reason() -> str | None:
    if shutil.which("libvirtd") is None:
        return "libvirtd is not installed"
    if os.geteuid() != 0:
        return "running the private libvirtd as another user needs root"
    try:
        pwd.getpwnam(DAEMON_USER)
    except KeyError:
        return f"there is no {DAEMON_USER!r} OS user to run libvirtd as"
    return None


class PrivateLibvirtd:
    def __init__(self):
        # Short: a unix socket path is limited to 107 bytes.
        self.base = tempfile.mkdtemp(prefix="agent-lvd-", dir="/tmp")
        self.runtime = os.path.join(self.base, "run")
        self.socket = os.path.join(self.runtime, "libvirt", "libvirt-sock")
        self.log_path = os.path.join(self.base, "libvirtd.log")
        user = pwd.getpwnam(DAEMON_USER)
        for name in ("run", "home", "config", "cache", "data"):
            os.makedirs(os.path.join(self.base, name))
            os.chown(os.path.join(self.base, name), user.pw_uid, user.pw_gid)
        os.chmod(self.base, 0o755)
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def uri(self) -> str:
        return f"test+unix:///default?socket={self.socket}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def start(self) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "XDG_RUNTIME_DIR": self.runtime,
               "HOME": os.path.join(self.base, "home"),
               "XDG_CONFIG_HOME": os.path.join(self.base, "config"),
               "XDG_CACHE_HOME": os.path.join(self.base, "cache"),
               "XDG_DATA_HOME": os.path.join(self.base, "data")}
        self._log = open(self.log_path, "wb")
        # libvirtd is this process's own child (no runuser in between: runuser stops itself
        # when its child is stopped and would never reap it), so destroy() reaps it.
        user = pwd.getpwnam(DAEMON_USER)
        self._proc = subprocess.Popen(["libvirtd", "--timeout", "0"], env=env,
                                      user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        libvirt = import_libvirt()
        end = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError:
                if self._proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"private libvirtd did not start: {self.log_tail()}")
                time.sleep(0.1)

    def log_tail(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-2000:]

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def destroy(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(START_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def private_libvirtd(request):
    """A started PrivateLibvirtd, stopped and removed after the test."""
    reason = unavailable_reason()
    require_tier("libvirtd-private", reason is None, reason or "")
    daemon = PrivateLibvirtd()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.destroy()
