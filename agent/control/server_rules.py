"""Which instance actions the API accepts in which state, as data (nova's compute/api.py
check_instance_state per action), and the task_state each one saves before it casts. Pure.

| action | vm_states allowed | task_states allowed | task_state saved | RPC method |
|---|---|---|---|---|
| stop | active, error | none | powering-off | stop_instance |
| start | stopped | none | powering-on | start_instance |
| reboot (SOFT) | active | none | rebooting | reboot_instance |
| reboot (HARD) | active, stopped, paused, suspended, error | none or a reboot/pause/unpause/suspend/resume in flight | rebooting_hard | reboot_instance |
| pause | active | none | pausing | pause_instance |
| unpause | paused | none | unpausing | unpause_instance |
| delete | any but deleted | any | deleting | terminate_instance |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from agent import vocabulary as states
from agent.control.errors import InstanceInvalidState

@dataclass(frozen=True)
class ActionRule:
    action: str  # nova's instance action name, recorded in instance_actions
    method: str  # the compute RPC method cast to the instance's host
    vm_states: frozenset[str] | None  # None: any (but deleted)
    task_states: frozenset[str | None] | None  # None: any
    task_state: str  # saved before the cast


_NONE = frozenset({None})
# nova's task_states.ALLOW_REBOOT: a hard reboot may interrupt these.
ALLOW_HARD_REBOOT_TASKS = frozenset({None, states.REBOOTING, states.REBOOT_PENDING,
                                     states.REBOOT_STARTED, states.REBOOTING_HARD,
                                     states.RESUMING, states.UNPAUSING, states.PAUSING,
                                     states.SUSPENDING})

RULES: Mapping[str, ActionRule] = {
    "stop": ActionRule("stop", "stop_instance", frozenset({states.ACTIVE, states.ERROR}),
                       _NONE, states.POWERING_OFF),
    "start": ActionRule("start", "start_instance", frozenset({states.STOPPED}), _NONE,
                        states.POWERING_ON),
    "reboot": ActionRule("reboot", "reboot_instance", frozenset({states.ACTIVE}), _NONE,
                         states.REBOOTING),
    "reboot-hard": ActionRule("reboot", "reboot_instance",
                              frozenset({states.ACTIVE, states.STOPPED, states.PAUSED,
                                         states.SUSPENDED, states.ERROR}),
                              ALLOW_HARD_REBOOT_TASKS, states.REBOOTING_HARD),
    "pause": ActionRule("pause", "pause_instance", frozenset({states.ACTIVE}), _NONE,
                        states.PAUSING),
    "unpause": ActionRule("unpause", "unpause_instance", frozenset({states.PAUSED}), _NONE,
                          states.UNPAUSING),
    "delete": ActionRule("delete", "terminate_instance", None, None, states.DELETING),
}


def check_state(rule: ActionRule, uuid: str, vm_state: str | None,
                task_state: str | None) -> None:
    """InstanceInvalidState naming the state that forbids `rule`'s action (nova's 409)."""
    if vm_state == states.DELETED or (rule.vm_states is not None
                                      and vm_state not in rule.vm_states):
        raise InstanceInvalidState(uuid, rule.action, "vm_state", vm_state)
    if rule.task_states is not None and task_state not in rule.task_states:
        raise InstanceInvalidState(uuid, rule.action, "task_state", task_state)
