"""The systemd notify protocol (sd_notify), written out: a few datagrams to NOTIFY_SOCKET.

systemd passes the socket's address in NOTIFY_SOCKET (a path, or '@name' for the abstract
namespace) when the unit has Type=notify; the agent sends newline-separated KEY=VALUE lines:
READY=1 once start-up is done, STATUS=<text> to say what it is doing, WATCHDOG=1 as a keep-alive
(every half of WATCHDOG_USEC) and STOPPING=1 when it shuts down. Without NOTIFY_SOCKET every call
is a no-op, so the same code runs from a shell, in tests and under systemd.

A failed send never raises: the agent's work matters more than its report to systemd. The first
failure is logged, and so is the first success after it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Mapping

LOG = logging.getLogger(__name__)


def socket_address(value: str) -> str | None:
    """NOTIFY_SOCKET as an AF_UNIX address: '@name' is the abstract socket '\\0name'.
    Anything else that is not an absolute path (e.g. a vsock address) is not supported."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None,
                      pid: int | None = None) -> float | None:
    """The watchdog timeout systemd expects, in seconds, or None when there is no watchdog.

    WATCHDOG_USEC holds the timeout in microseconds; when WATCHDOG_PID is set, the watchdog is
    meant for that process only (a child that inherited the environment must not answer it).
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return value / 1_000_000


class Notifier:
    """Sends notify lines to one socket address, or does nothing when the address is None."""

    def __init__(self, address: str | None):
        self._address = address
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        environ = os.environ if environ is None else environ
        raw = environ.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            LOG.warning("NOTIFY_SOCKET=%r is not a unix socket path or abstract name: "
                        "systemd notifications are off", raw)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        # STATUS is one line: a newline would start a new (bogus) assignment.
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def notify(self, *lines: str) -> bool:
        """Send the lines as one datagram; True when it was sent, False otherwise (no-op or
        failure). Never raises."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    LOG.warning("cannot notify systemd through %s: %s (further failures are "
                                "not logged)", self._address.replace("\0", "@"), exc)
                return False
            if self._failing:
                self._failing = False
                LOG.info("notifying systemd works again")
            return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
