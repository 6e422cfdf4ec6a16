"""`./dev.sh run` passes its default state directory (./state) only when the user chose none: a
`--state-path`, or a configuration file that sets state_path, is used as given."""

from __future__ import annotations

import subprocess

import pytest

from tests.agent_process import DEADLINE
from tests.repo_copy import clean_environment, fresh_copy


@pytest.fixture
def copy(tmp_path):
    return fresh_copy(tmp_path / "compute-agent")


def dev_sh_run(copy, *args):
    result = subprocess.run([str(copy / "dev.sh"), "run", *args, "--once", "--format", "json"],
                            cwd=copy, env=clean_environment(), capture_output=True, text=True,
                            timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    return result


def write_conf(copy, text):
    path = copy / "mine.conf"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("form", ["--config FILE", "--config=FILE"])
def test_a_config_files_state_path_is_used_as_given(copy, tmp_path, form):
    mine = tmp_path / "my-state"
    conf = write_conf(copy, f"[DEFAULT]\nhost = dev-1\nstate_path = {mine}\n")
    args = ["--config", str(conf)] if form == "--config FILE" else [f"--config={conf}"]
    dev_sh_run(copy, *args)
    assert (mine / "agent.sqlite").is_file() and (mine / "compute_id").is_file()
    assert not (copy / "state").exists()


def test_a_state_path_option_is_used_as_given(copy, tmp_path):
    mine = tmp_path / "my-state"
    dev_sh_run(copy, "--host", "dev-1", "--state-path", str(mine))
    assert (mine / "compute_id").is_file()
    assert not (copy / "state").exists()


def test_without_a_choice_the_state_is_under_the_checkout(copy):
    conf = write_conf(copy, "[DEFAULT]\nhost = dev-1\n")
    dev_sh_run(copy, "--config", str(conf))
    assert (copy / "state" / "agent.sqlite").is_file()
    assert (copy / "state" / "compute_id").is_file()
