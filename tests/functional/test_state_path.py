"""Where the state lives when state_path is not set: systemd's $STATE_DIRECTORY first (the shipped
unit runs a dynamic user without a usable HOME), then the root or XDG/HOME defaults, else a
clear error."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from agent.cli import main
from agent.config import load_config
from agent.errors import ConfigError
from agent.files import default_state_path

NO_DEFAULT = ("[DEFAULT] state_path is not set and has no default here: neither "
              "$STATE_DIRECTORY (systemd's StateDirectory=), $XDG_STATE_HOME nor $HOME is set; "
              "set state_path in the configuration or pass --state-path")


@pytest.mark.parametrize("environ, euid, expected", [
    ({"STATE_DIRECTORY": "/var/lib/compute-agent"}, 61234, "/var/lib/compute-agent"),
    ({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b", "HOME": "/home/x"}, 1000, "/var/lib/a"),
    ({"STATE_DIRECTORY": "/srv/state"}, 0, "/srv/state"),
    ({"HOME": "/root"}, 0, "/var/lib/compute-agent"),
    ({"XDG_STATE_HOME": "/home/x/st", "HOME": "/home/x"}, 1000, "/home/x/st/compute-agent"),
    ({"XDG_STATE_HOME": "rel/st", "HOME": "/home/x"}, 1000,
     "/home/x/.local/state/compute-agent"),
    ({"HOME": "/home/x"}, 1000, "/home/x/.local/state/compute-agent"),
    ({"STATE_DIRECTORY": "", "HOME": "/home/x"}, 1000, "/home/x/.local/state/compute-agent"),
], ids=["systemd", "systemd-several", "systemd-as-root", "root", "xdg", "xdg-relative-ignored",
        "home", "empty-state-directory"])
def test_default_state_path(environ, euid, expected):
    assert default_state_path(environ, euid) == expected


@pytest.mark.parametrize("environ", [{}, {"HOME": "/"}, {"HOME": "", "XDG_STATE_HOME": ""}],
                         ids=["nothing", "home-is-root-dir", "empty"])
def test_no_default_state_path_is_a_clear_error(environ):
    with pytest.raises(ConfigError) as caught:
        default_state_path(environ, 61234)
    assert str(caught.value) == NO_DEFAULT


def test_config_without_any_default_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    # A dynamic user of systemd without StateDirectory=: not root, HOME unset. The tests run as
    # root, so the user id is the one thing set here.
    for name in ("STATE_DIRECTORY", "XDG_STATE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 61234)
    config = tmp_path / "agent.conf"
    config.write_text("[DEFAULT]\ncompute_driver = fake\n", encoding="utf-8")
    assert main(["--config", str(config), "services", "list"]) == 2
    assert capsys.readouterr().err == f"agent: error: {NO_DEFAULT}\n"
    # Given, it needs no default.
    conf = load_config(str(config), {("DEFAULT", "state_path"): str(tmp_path / "s")})
    assert conf.state_path == str(tmp_path / "s")


def test_once_runs_in_state_directory_with_home_unset(tmp_path):
    # The README's minimal configuration (no state_path, no database: the embedded SQLite),
    # in the environment the shipped unit gives: STATE_DIRECTORY set, HOME and XDG unset.
    state = tmp_path / "var-lib-compute-agent"
    state.mkdir(mode=0o750)
    config = tmp_path / "agent.conf"
    config.write_text("[DEFAULT]\ncompute_driver = fake\nhost = unit-host\n"
                      "periodic_fuzzy_delay = 0\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_STATE_HOME")}
    env["STATE_DIRECTORY"] = str(state)
    result = subprocess.run([sys.executable, "-m", "agent", "--config", str(config), "--once"],
                            capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "unit-host" in result.stdout
    uuid.UUID((state / "compute_id").read_text(encoding="utf-8").strip())
    assert (state / "agent.sqlite").is_file()
    assert not (tmp_path / ".local").exists()


def test_state_path_with_a_blank_and_an_at_sign_holds_the_embedded_database(tmp_path):
    # The derived sqlite:/// URL has no user-info, so nothing in its path can be a password.
    state = tmp_path / "My State@2"
    result = subprocess.run([sys.executable, "-m", "agent", "--once", "--driver", "fake",
                             "--host", "spacey", "--state-path", str(state)],
                            capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (state / "agent.sqlite").is_file()
