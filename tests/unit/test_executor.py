"""The command executor seam, with real processes (no privileges needed)."""

from __future__ import annotations

import sys

import pytest

from agent.network.executor import ProcessError, RecordingExecutor, SubprocessExecutor


def test_stdout_is_returned_and_stdin_fed():
    assert SubprocessExecutor().run(["cat"], "*filter\nCOMMIT\n") == "*filter\nCOMMIT\n"


def test_prefix_runs_before_the_command():
    # the prefix is how tests enter a namespace (nsenter --net=...); env is a harmless stand-in
    out = SubprocessExecutor(["env", "AGENT_TEST_MARK=1"]).run(
        [sys.executable, "-c", "import os; print(os.environ['AGENT_TEST_MARK'])"])
    assert out == "1\n"


def test_failure_carries_status_and_stderr():
    with pytest.raises(ProcessError) as caught:
        SubprocessExecutor().run([sys.executable, "-c",
                                  "import sys; sys.stderr.write('Error occurred at line: 7\\n');"
                                  " sys.exit(2)"])
    assert caught.value.returncode == 2
    assert caught.value.stderr == "Error occurred at line: 7\n"
    assert "exited with status 2: Error occurred at line: 7" in str(caught.value)


def test_missing_command_is_a_process_error():
    with pytest.raises(ProcessError, match="no-such-restore: command not found") as caught:
        SubprocessExecutor().run(["no-such-restore"])
    assert caught.value.returncode == 127


def test_stuck_command_is_stopped():
    with pytest.raises(ProcessError, match="timed out") as caught:
        SubprocessExecutor(timeout=0.2).run(["sleep", "60"])
    assert caught.value.returncode is None


def test_recording_executor_keeps_every_call_even_failed_ones():
    recorder = RecordingExecutor(SubprocessExecutor())
    recorder.run(["cat"], "x")
    with pytest.raises(ProcessError):
        recorder.run(["false"])
    assert [(c.argv, c.stdin) for c in recorder.calls] == [(("cat",), "x"), (("false",), None)]
    assert recorder.count("cat") == 1 and recorder.count("true") == 0
    recorder.clear()
    assert recorder.calls == []
