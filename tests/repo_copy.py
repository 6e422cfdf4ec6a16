"""A fresh copy of this checkout for tests that run its developer commands (`./dev.sh ...`) as a
newcomer would, without touching the checkout itself.

The copy holds the repository's files (tracked and new, not ignored ones: no state, no
caches), with their modification times, and a virtual environment of its own, without pip, that
sees the packages of the checkout's environment (`./dev.sh setup` must have built it). `dev.sh`
in the copy then finds its environment installed; if it tried to install anyway it would fail
for want of pip, and never change the checkout's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.agent_process import REPO_ROOT
from tests.conftest import require_tier

VENV = REPO_ROOT / ".venv"


def repository_files() -> list[str]:
    listing = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached",
                              "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    return [name for name in listing.decode().split("\0")
            if name and (REPO_ROOT / name).is_file()]


def fresh_copy(target: Path) -> Path:
    """Copy the checkout into `target` (created) and link its virtual environment; returns
    `target`."""
    require_tier("dev-venv", (VENV / "bin" / "python").is_file(),
                 f"{VENV} is missing: run ./dev.sh setup")
    for name in repository_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, destination)  # keeps the mode and the mtime
    _layered_venv(target / ".venv")
    return target


def _layered_venv(path: Path) -> None:
    """A pip-less virtual environment at `path` whose interpreter also loads the checkout's
    environment's packages (including the editable install), with an `agent` script and the
    stamp that tells dev.sh the test environment is installed."""
    subprocess.run([str(VENV / "bin" / "python"), "-m", "venv", "--without-pip", str(path)],
                   check=True)
    shared = subprocess.run([str(VENV / "bin" / "python"), "-c",
                             "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    mine = subprocess.run([str(path / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(mine, "checkout-venv.pth").write_text(
        f"import site; site.addsitedir({shared!r})\n", encoding="utf-8")
    script = path / "bin" / "agent"
    script.write_text(f"#!{path}/bin/python\nimport sys\nfrom agent.cli import main\n"
                      "sys.exit(main())\n", encoding="utf-8")
    script.chmod(0o755)
    (path / ".installed-test").touch()


def clean_environment() -> dict[str, str]:
    """The test's environment without what would steer the agent or dev.sh elsewhere."""
    dropped = ("AGENT_STATE_PATH", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
               "PYTHONPATH", "VIRTUAL_ENV")
    return {key: value for key, value in os.environ.items() if key not in dropped}
