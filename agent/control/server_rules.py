"""Which instance actions the API accepts in which state, as data (nova's compute/api.py
check_instance_state per action), and the task_state each one saves before it casts. Pure.

| action | vm_states allowed | task_states allowed | task_state saved | RPC method |
|---|---|---|---|---|
| stop | active, error | none | powering-off | stop_instance |
| start | stopped | none | powering-on | start_instance |
| reboot (SOFT) | active | none | rebooting | reboot_instance |
| reboot (HARD) | (1) | (1) | rebooting_hard | reboot_instance |
| pause | active | none | pausing | pause_instance |
| unpause | paused | none | unpausing | unpause_instance |
| delete | any but deleted | any | deleting | terminate_instance |

(1) vm_state active, stopped, paused, suspended or error; task_state none, or a reboot,
pause, unpause, suspend or resume in flight.

The instance's host (nova's check_instance_host decorator, then its delete):
- stop and start need the instance to have a host: none (still scheduling, or no valid host
  was found) is InstanceNotReady, 409 "Instance <uuid> is not ready". nova puts no such check
  on reboot, pause and unpause and would cast them to no host; they are refused the same way
  here.
- No action here is refused because its host is down: nova's check_is_up=True (its
  ServiceUnavailable, 409 "Service is unavailable at this time.") guards only resize, cold
  migrate, confirm-resize and volume detach, which this control plane does not offer. A stop,
  start, reboot, pause or unpause for a host that is down is saved and cast; the host's
  queue keeps it until the agent is back.
- delete is done in the database alone (nova's local delete) when the instance has no host,
  when its host has no compute service, or when that service is down (forced down
  included); otherwise it is cast, and a delete of an instance already deleting on a host
  that is up is ignored (nothing recorded, nothing cast), as nova's _delete does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from agent import vocabulary as states
from agent.control.errors import InstanceInvalidState, InstanceNotReady


@dataclass(frozen=True)
class ActionRule:
    action: str  # nova's instance action name, recorded in instance_actions
    method: str  # the compute RPC method cast to the instance's host
    vm_states: frozenset[str] | None  # None: any (but deleted)
    task_states: frozenset[str | None] | None  # None: any
    task_state: str  # saved before the cast
    needs_host: bool = True  # refused without a host (nova's check_instance_host())


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
    "delete": ActionRule("delete", "terminate_instance", None, None, states.DELETING,
                         needs_host=False),
}


def check_state(rule: ActionRule, uuid: str, vm_state: str | None,
                task_state: str | None) -> None:
    """InstanceInvalidState naming the state that forbids `rule`'s action (nova's 409)."""
    if vm_state == states.DELETED or (rule.vm_states is not None
                                      and vm_state not in rule.vm_states):
        raise InstanceInvalidState(uuid, rule.action, "vm_state", vm_state)
    if rule.task_states is not None and task_state not in rule.task_states:
        raise InstanceInvalidState(uuid, rule.action, "task_state", task_state)


def check_host(rule: ActionRule, uuid: str, host: str | None) -> None:
    """InstanceNotReady when `rule`'s action needs the instance's host and it has none."""
    if rule.needs_host and not host:
        raise InstanceNotReady(uuid, rule.action)


DELETE_CAST, DELETE_LOCAL, DELETE_IGNORED = "cast", "local", "ignored"


def delete_path(host: str | None, host_up: bool | None, task_state: str | None) -> str:
    """How a delete goes (nova's compute API _delete): DELETE_LOCAL, in the database alone,
    when the instance has no host or its host's compute service is missing (`host_up` None)
    or down; DELETE_IGNORED when the host is up and the instance is already deleting;
    otherwise DELETE_CAST to the host."""
    if not host or not host_up:
        return DELETE_LOCAL
    if task_state == states.DELETING:
        return DELETE_IGNORED
    return DELETE_CAST
