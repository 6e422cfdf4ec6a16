"""nova's state rules per instance action (compute/api.py check_instance_state), one row each."""

from __future__ import annotations

import pytest

from agent.control.errors import InstanceInvalidState
from agent.control.server_rules import RULES, check_state

U = "6f0c1a52-8a3e-4f57-9a0e-000000000001"

ALLOWED = [
    ("stop", "active", None), ("stop", "error", None),
    ("start", "stopped", None),
    ("reboot", "active", None),
    ("reboot-hard", "active", None), ("reboot-hard", "stopped", None),
    ("reboot-hard", "paused", None), ("reboot-hard", "suspended", None),
    ("reboot-hard", "error", None), ("reboot-hard", "active", "rebooting"),
    ("reboot-hard", "active", "pausing"), ("reboot-hard", "active", "rebooting_hard"),
    ("pause", "active", None),
    ("unpause", "paused", None),
    ("delete", "active", None), ("delete", "building", "scheduling"),
    ("delete", "error", "deleting"), ("delete", "stopped", "powering-on"),
]
REFUSED = [
    ("stop", "stopped", None, "vm_state"), ("stop", "building", "scheduling", "vm_state"),
    ("stop", "active", "rebooting", "task_state"),
    ("start", "active", None, "vm_state"), ("start", "stopped", "powering-on", "task_state"),
    ("reboot", "stopped", None, "vm_state"), ("reboot", "active", "rebooting", "task_state"),
    ("reboot-hard", "building", None, "vm_state"),
    ("reboot-hard", "active", "powering-off", "task_state"),
    ("pause", "paused", None, "vm_state"), ("pause", "active", "pausing", "task_state"),
    ("unpause", "active", None, "vm_state"), ("unpause", "paused", "unpausing", "task_state"),
    ("delete", "deleted", None, "vm_state"),
]


@pytest.mark.parametrize("action, vm_state, task_state", ALLOWED)
def test_allowed(action, vm_state, task_state):
    check_state(RULES[action], U, vm_state, task_state)


@pytest.mark.parametrize("action, vm_state, task_state, attr", REFUSED)
def test_refused_names_the_state(action, vm_state, task_state, attr):
    with pytest.raises(InstanceInvalidState) as refused:
        check_state(RULES[action], U, vm_state, task_state)
    state = vm_state if attr == "vm_state" else task_state
    assert (refused.value.attr, refused.value.state) == (attr, state)
    assert f"while it is in {attr} {state}" in str(refused.value)


@pytest.mark.parametrize("action, task_state, method", [
    ("stop", "powering-off", "stop_instance"), ("start", "powering-on", "start_instance"),
    ("reboot", "rebooting", "reboot_instance"),
    ("reboot-hard", "rebooting_hard", "reboot_instance"),
    ("pause", "pausing", "pause_instance"), ("unpause", "unpausing", "unpause_instance"),
    ("delete", "deleting", "terminate_instance"),
])
def test_saved_task_state_is_the_one_the_host_expects(action, task_state, method):
    from agent.compute.operation_rules import RULES as HOST_RULES

    rule = RULES[action]
    assert (rule.task_state, rule.method) == (task_state, method)
    assert task_state in HOST_RULES[method].expected_task_states
