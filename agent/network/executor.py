"""Running the commands the network code needs, behind a small seam.

`Executor` is what the iptables manager calls; `SubprocessExecutor` runs real binaries, optionally
behind a prefix such as `nsenter --net=/proc/PID/ns/net` or `ip netns exec NAME` so that tests and
benchmarks can run the real tools inside a private network namespace. `RecordingExecutor` wraps
another executor and keeps every call, so a test can count restores made by the real binaries.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from dataclasses import dataclass
from typing import Protocol, Sequence

from agent.errors import AgentError

LOG = logging.getLogger(__name__)

# iptables-save / iptables-restore of a 5,000-instance table finish in a few seconds; a command
# still running after this long is stuck (e.g. waiting on the xtables lock).
DEFAULT_TIMEOUT = 120.0


class ProcessError(AgentError):
    """A command exited non-zero, could not be started or timed out."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str,
                 stdout: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        status = "timed out" if returncode is None else f"exited with status {returncode}"
        detail = stderr.strip().splitlines()
        super().__init__(f"{' '.join(self.argv)} {status}"
                         + (f": {detail[0]}" if detail else ""))


class Executor(Protocol):
    def run(self, argv: list[str], stdin: str | None = None) -> str:
        """Run argv, feeding stdin; return its stdout. Raise ProcessError on failure."""


class SubprocessExecutor:
    """Runs commands with subprocess, each prefixed by `prefix_argv` (never through a shell)."""

    def __init__(self, prefix_argv: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT):
        self.prefix_argv = tuple(prefix_argv)
        self.timeout = timeout

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        full = [*self.prefix_argv, *argv]
        LOG.debug("running %s", " ".join(full))
        try:
            proc = subprocess.run(full, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except FileNotFoundError as exc:
            raise ProcessError(full, 127, f"{exc.filename}: command not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(full, None, f"no exit after {self.timeout:g} s") from exc
        if proc.returncode != 0:
            raise ProcessError(full, proc.returncode, proc.stderr, proc.stdout)
        return proc.stdout


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    stdin: str | None


class RecordingExecutor:
    """Passes every call to `inner` and records it (also the calls that failed)."""

    def __init__(self, inner: Executor):
        self.inner = inner
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        with self._lock:
            self.calls.append(Call(tuple(argv), stdin))
        return self.inner.run(argv, stdin)

    def count(self, program: str) -> int:
        """How many calls ran `program` (matched against the first word of argv)."""
        return sum(1 for call in self.calls if call.argv and call.argv[0] == program)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


def reads_only(argv: Sequence[str]) -> bool:
    """Whether a command only reads the kernel's tables (iptables-save and its kin)."""
    return bool(argv) and argv[0].endswith("-save")


class DryRunExecutor:
    """The firewall side of a dry run: commands that read (`is_read`: the *-save tools) run
    through `inner`; every other command (a restore) is logged with its size, kept in `calls`
    and not run. A read that fails (no privileges) is a warning and reads as an empty table:
    a dry run reports, it does not fail for what it would not do anyway."""

    def __init__(self, inner: Executor, is_read=reads_only):
        self.inner = inner
        self.is_read = is_read
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        if self.is_read(argv):
            try:
                return self.inner.run(argv, stdin)
            except ProcessError as exc:
                LOG.warning("dry run: cannot read the filter table with %s, so cannot tell "
                            "what would change: %s", argv[0], exc)
                return ""
        with self._lock:
            self.calls.append(Call(tuple(argv), stdin))
        lines = (stdin or "").count("\n")
        LOG.info("dry run: would run %s (%d line%s)", argv[0], lines, "" if lines == 1 else "s")
        return ""
