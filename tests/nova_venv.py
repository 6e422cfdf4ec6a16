"""nova's own sender as a test part: a virtual environment of its own (`.venv-nova` at the top
of the repository, kept between runs) with nova from PyPI, whose Python runs
tests/nova_sender/send.py. Made on first use (pip install nova: about 130 packages, a minute or
two); without it (no network, pip failing) the 'nova-sender' tier is missing: skipped, or failed
under CI."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tier

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("AGENT_TEST_NOVA_VENV", REPO_ROOT / ".venv-nova"))
STAMP = VENV / ".installed-nova"
SENDER = REPO_ROOT / "tests" / "nova_sender" / "send.py"


def nova_python() -> Path:
    """The nova environment's python, made once (under a lock: parallel runs wait)."""
    python = VENV / "bin" / "python"
    if STAMP.exists():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(str(VENV) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not STAMP.exists():
            made = subprocess.run(
                f"{sys.base_prefix}/bin/python3 -m venv {VENV} && "
                f"{python} -m pip install -q nova", shell=True, capture_output=True,
                text=True, timeout=1800)
            require_tier("nova-sender", made.returncode == 0,
                         f"cannot install nova into {VENV}: {made.stderr[-500:]}")
            STAMP.touch()
    return python


class NovaSender:
    """A running send.py: `send(request)` writes one request and returns its answer."""

    def __init__(self, transport_url: str, host: str):
        self.proc = subprocess.Popen([str(nova_python()), str(SENDER), transport_url, host],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def send(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"nova sender died: {self.proc.stderr.read()[-2000:]}"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
