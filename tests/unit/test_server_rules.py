"""nova's state rules per instance action (compute/api.py check_instance_state), one row each."""

from __future__ import annotations

import pytest

from agent.control.errors import InstanceInvalidState, InstanceNotReady
from agent.control.server_rules import (DELETE_CAST, DELETE_IGNORED, DELETE_LOCAL, RULES,
                                        check_host, check_state, delete_path)

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


# nova's compute API: @check_instance_host() on stop and start (InstanceNotReady, 409);
# reboot, pause and unpause refused the same way here (nova would cast them to no host).
@pytest.mark.parametrize("action, needs_host", [
    ("stop", True), ("start", True), ("reboot", True), ("reboot-hard", True),
    ("pause", True), ("unpause", True), ("delete", False),
])
def test_actions_that_need_a_host_refuse_an_instance_without_one(action, needs_host):
    check_host(RULES[action], U, "cmp1")  # a host: never refused
    if not needs_host:
        check_host(RULES[action], U, None)
        return
    with pytest.raises(InstanceNotReady) as refused:
        check_host(RULES[action], U, None)
    assert str(refused.value) == f"Instance {U} is not ready"  # nova's words
    assert refused.value.http_status == 409


# nova's compute API _delete: local when there is no host, no compute service for it, or the
# service is down; a second delete while the host (up) is already deleting is ignored.
@pytest.mark.parametrize("host, host_up, task_state, path", [
    (None, None, None, DELETE_LOCAL),
    (None, None, "scheduling", DELETE_LOCAL),
    ("cmp1", None, None, DELETE_LOCAL),          # the host has no compute service
    ("cmp1", False, None, DELETE_LOCAL),         # down (or forced down)
    ("cmp1", False, "deleting", DELETE_LOCAL),   # a delete the down host never did
    ("cmp1", False, "powering-off", DELETE_LOCAL),
    ("cmp1", True, None, DELETE_CAST),
    ("cmp1", True, "powering-off", DELETE_CAST),
    ("cmp1", True, "deleting", DELETE_IGNORED),
], ids=["no-host", "no-host-scheduling", "no-service", "down", "down-deleting",
        "down-busy", "up", "up-busy", "up-deleting"])
def test_delete_path(host, host_up, task_state, path):
    assert delete_path(host, host_up, task_state) == path
