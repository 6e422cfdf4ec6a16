"""The shipped unit file, checked by systemd's own tools, and kept in step with the agent."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.options import find
from tests.conftest import require_tier

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "compute-agent.service"
API_UNIT = UNIT.with_name("compute-agent-api.service")
MAX_EXPOSURE = 5.0


@pytest.fixture
def systemd_analyze():
    path = shutil.which("systemd-analyze")
    require_tier("systemd", path is not None, "systemd-analyze is not installed")
    return path


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)\s*([a-z]*)", value)
    assert match and match.group(2) in units, f"unexpected time span {value!r}"
    return int(match.group(1)) * units[match.group(2)]


def system_scripts_dir() -> str:
    """Where `pip install compute-agent` as root puts console scripts: the scripts directory
    of the system interpreter's default install scheme (/usr/local/bin on Debian and Ubuntu)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    require_tier("systemd", python is not None, "no system python3 in /usr/bin")
    result = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                             "'scripts'))"], capture_output=True, text=True, timeout=60,
                            check=True, env={"PATH": "/usr/bin:/bin"})
    return result.stdout.strip()


@pytest.mark.systemd
@pytest.mark.parametrize("unit", [UNIT, API_UNIT], ids=["agent", "api"])
def test_unit_as_shipped_verifies_where_pip_installs_the_agent(tmp_path, systemd_analyze,
                                                                unit):
    # The unit, unchanged, in a root directory that holds systemd's units and the agent's
    # console script where a root `pip install` puts it: verify checks ExecStart's binary too.
    settings = unit_settings(unit.read_text(encoding="utf-8"))
    binary = settings["ExecStart"][0].split()[0]
    assert os.path.dirname(binary) == system_scripts_dir()
    script = Path(sys.executable).with_name("agent")
    require_tier("systemd", script.exists(), f"{script} is not installed (pip install -e .)")
    root = tmp_path / "root"
    (root / binary.lstrip("/")).parent.mkdir(parents=True)
    shutil.copy2(script, root / binary.lstrip("/"))
    # systemd's own units (sysinit.target, ...), links kept as links (they resolve inside root).
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copy2(unit, units / unit.name)
    result = subprocess.run([systemd_analyze, "verify", f"--root={root}",
                             str(units / unit.name)], capture_output=True, text=True,
                            timeout=120)
    assert result.stderr == ""
    assert result.returncode == 0
    # Without the script there, verify fails: the check above is a real one.
    (root / binary.lstrip("/")).unlink()
    missing = subprocess.run([systemd_analyze, "verify", f"--root={root}",
                              str(units / unit.name)], capture_output=True, text=True,
                             timeout=120)
    assert f"Command {binary} is not executable" in missing.stderr


@pytest.mark.systemd
@pytest.mark.parametrize("unit", [UNIT, API_UNIT], ids=["agent", "api"])
def test_unit_exposure_is_at_most_five(systemd_analyze, unit):
    result = subprocess.run([systemd_analyze, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_unit_matches_what_the_agent_does():
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["Restart"] == ["on-failure"]
    assert "network-online.target" in settings["After"][0]
    assert "libvirtd.service" in settings["After"][0]
    # systemd must not kill the agent while it is still stopping by itself.
    graceful = find("DEFAULT", "graceful_shutdown_timeout").default
    assert seconds(settings["TimeoutStopSec"][0]) > graceful
    # One missed WATCHDOG=1 (sent every half period) must not restart the agent: the period
    # exceeds what the heartbeat's health allows by default (2 x report_interval + 1 s).
    report_interval = find("DEFAULT", "report_interval").default
    assert seconds(settings["WatchdogSec"][0]) / 2 >= report_interval
    assert set(settings["CapabilityBoundingSet"][0].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    # The default state_path under the unit is $STATE_DIRECTORY (agent.files): the unit must
    # ask for it, private to the service's user and group.
    assert settings["StateDirectory"] == ["compute-agent"]
    assert settings["StateDirectoryMode"] == ["0750"]


def test_api_unit_runs_agent_api_as_the_agents_user_without_capabilities():
    settings = unit_settings(API_UNIT.read_text(encoding="utf-8"))
    agent = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert settings["ExecStart"][0].split()[1:] == agent["ExecStart"][0].split()[1:] + ["api"]
    # One dynamic user for both units, so the embedded SQLite database is shared.
    assert settings["DynamicUser"] == ["yes"] and settings["User"] == ["compute-agent"]
    assert settings["StateDirectory"] == agent["StateDirectory"]
    assert settings["CapabilityBoundingSet"] == [""]
