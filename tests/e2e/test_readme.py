"""The README is executed, not just read: its ```sh blocks run in order, as written, in a fresh
copy of the repository (tests/repo_copy.py), each line as one shell command that must succeed.

The convention the README follows:
- every ```sh block is part of the walkthrough and runs; examples that need more than this
  machine (a second host, a database server) are fenced ```shell and do not;
- a command whose comment says "(runs until Ctrl-C)" is the daemon: it must start (log
  "compute agent running") and then stop with status 0 on SIGINT to its process group, as
  Ctrl-C in a terminal does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

from tests.agent_process import DEADLINE, REPO_ROOT, wait_for
from tests.repo_copy import clean_environment, fresh_copy

DAEMON_MARK = "(runs until Ctrl-C)"
_FENCE = re.compile(r"^```(\S*)\s*$")


def sh_commands(markdown: str) -> list[str]:
    """The command lines of the ```sh blocks of `markdown`, in order (blank and comment-only
    lines left out)."""
    commands, language = [], None
    for line in markdown.splitlines():
        fence = _FENCE.match(line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language == "sh" and line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def test_sh_commands_reads_only_sh_blocks():
    text = ("```sh\n./a   # one\n\n# note\n./b\n```\ntext\n```shell\nc\n```\n"
            "```ini\n[x]\n```\n```sh\n./d\n```\n")
    assert sh_commands(text) == ["./a   # one", "./b", "./d"]


def run_daemon(command: str, cwd, env) -> str:
    """Start the daemon command, wait until it runs, stop it as Ctrl-C would; its log."""
    log_path = cwd / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)
    try:
        running = wait_for(lambda: "compute agent running" in log_path.read_text()
                           or proc.poll() is not None)
        assert running and proc.poll() is None, (command, log_path.read_text())
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(DEADLINE) == 0, (command, log_path.read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(DEADLINE)
    return log_path.read_text()


def test_readme_walkthrough_runs_as_written(tmp_path):
    copy = fresh_copy(tmp_path / "compute-agent")
    commands = sh_commands((copy / "README.md").read_text(encoding="utf-8"))
    assert any(DAEMON_MARK in c for c in commands) and any("--dry-run" in c for c in commands)
    env = clean_environment()
    for command in commands:
        if DAEMON_MARK in command:
            log = run_daemon(command, copy, env)
            assert "compute agent stopped" in log
            continue
        result = subprocess.run(["bash", "-c", command], cwd=copy, env=env,
                                capture_output=True, text=True, timeout=DEADLINE)
        assert result.returncode == 0, (command, result.stderr)
        if "--dry-run" in command:
            assert result.stdout.startswith("DRY RUN"), (command, result.stdout)
    assert not (REPO_ROOT / "demo-state").exists()  # everything happened in the copy


def test_readme_shell_blocks_follow_the_convention():
    """A shell block is either the walkthrough (sh) or an example (shell); another spelling
    would silently drop out of the walkthrough."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    languages = {m.group(1) for m in re.finditer(r"^```(\S+)\s*$", text, re.M)}
    assert not languages & {"bash", "console", "shell-session", "zsh"}, languages
