"""The control plane's refusals: typed, carrying the values a caller needs to word them (the
command line adds the command to run next; the API will map them to HTTP codes). A refusal
changes nothing: it is raised inside the request's transaction, which then rolls back.

Each str() is a plain statement of the fact, without advice.
"""

from __future__ import annotations

from typing import Sequence

from agent.errors import ServiceError


class ControlError(ServiceError):
    """An operator request the control plane refuses."""


class ServiceNotFound(ControlError):
    """No live service row for `host` and `binary`; `role` ('source host', 'destination
    host') says which one a request named, when it named several."""

    def __init__(self, host: str, binary: str, role: str | None = None):
        super().__init__(f"{role or 'host'} {host!r}: no service with binary {binary!r}")
        self.host, self.binary, self.role = host, binary, role


class ReasonTooLong(ControlError):
    """A disable reason longer than services.disabled_reason holds."""

    def __init__(self, length: int, limit: int):
        super().__init__(f"disable reason is {length} characters long; at most {limit}")
        self.length, self.limit = length, limit


class ReasonReserved(ControlError):
    """A disable reason starting with the agent's own 'AUTO:' prefix."""

    def __init__(self, reason: str):
        super().__init__(f"disable reason {reason[:40]!r} starts with the reserved 'AUTO:'")
        self.reason = reason


class EvacuationsPending(ControlError):
    """forced_down cannot be lifted: `count` evacuations from `host` are still 'done' (the
    host would come back and run guests that were rebuilt elsewhere)."""

    def __init__(self, host: str, binary: str, count: int):
        super().__init__(f"host {host!r}: {count} evacuation(s) still in status 'done'")
        self.host, self.binary, self.count = host, binary, count


class ServiceInUse(ControlError):
    """The service cannot be deleted: `instances` live instances are on its host and/or
    `migrations` migrations from or to it are unfinished."""

    def __init__(self, host: str, binary: str, instances: int, migrations: int):
        super().__init__(f"host {host!r}: {instances} instance(s), {migrations} unfinished "
                         "migration(s)")
        self.host, self.binary = host, binary
        self.instances, self.migrations = instances, migrations


class SameHost(ControlError):
    """An evacuation whose destination is its source."""

    def __init__(self, host: str):
        super().__init__(f"host {host!r} is both source and destination")
        self.host = host


class ServiceIsUp(ControlError):
    """The source of an evacuation is up: `age_s` seconds since its last beat (None: unknown),
    judged against `service_down_time` seconds."""

    def __init__(self, host: str, binary: str, age_s: float | None, service_down_time: float):
        super().__init__(f"service {binary} on host {host} is up")
        self.host, self.binary = host, binary
        self.age_s, self.service_down_time = age_s, service_down_time


class DestinationForcedDown(ControlError):
    def __init__(self, host: str):
        super().__init__(f"destination host {host} is forced down")
        self.host = host


class DestinationDown(ControlError):
    """`reason`: liveness's words for why the destination is down."""

    def __init__(self, host: str, reason: str | None):
        super().__init__(f"destination host {host} is down ({reason})")
        self.host, self.reason = host, reason


class DestinationDisabled(ControlError):
    def __init__(self, host: str, reason: str | None):
        super().__init__(f"destination host {host} is disabled")
        self.host, self.reason = host, reason


class DestinationNodes(ControlError):
    """The destination has no compute node yet, or several (`nodes`: their hypervisor
    hostnames)."""

    def __init__(self, host: str, nodes: Sequence[str]):
        super().__init__(f"destination host {host} has {len(nodes)} compute nodes")
        self.host, self.nodes = host, tuple(nodes)


class OutcomeUnknown(ServiceError):
    """Not a refusal: the connection failed while an evacuation was committing, so the server
    may have made every move or none. The database's error is the exception's __cause__."""

    def __init__(self, source_host: str, dest_host: str, count: int):
        super().__init__(f"the connection failed while committing the evacuation of host "
                         f"{source_host} to host {dest_host}: the outcome is unknown")
        self.source_host = source_host
        self.dest_host = dest_host
        self.count = count


class FlavorNotFound(ControlError):
    """No flavor with `key` as its flavorid or name."""

    def __init__(self, key: str):
        super().__init__(f"flavor {key!r} not found")
        self.key = key


class FlavorExists(ControlError):
    """A flavor with this `field` ('name' or 'flavorid') and `value` already exists."""

    def __init__(self, field: str, value: str):
        super().__init__(f"a flavor with {field} {value!r} already exists")
        self.field, self.value = field, value


class InvalidValue(ControlError):
    """A request's `field` holds `value`, which is not `expected`. Bad input: exit status 2
    on the command line, 400 in the API."""

    exit_code = 2

    def __init__(self, field: str, value: object, expected: str):
        super().__init__(f"{field} {value!r}: expected {expected}")
        self.field, self.value, self.expected = field, value, expected


class NoValidHost(ControlError):
    """No compute node passed the scheduler's filters. `failures`: (host, node, filter,
    reason) per node refused; empty when there was no candidate node at all
    (`requested_host`: the only host asked for, if any)."""

    def __init__(self, failures: Sequence[tuple[str, str, str, str]],
                 requested_host: str | None = None):
        where = f" on host {requested_host}" if requested_host else ""
        detail = ("; ".join(f"{host} ({node}): {name}: {reason}"
                            for host, node, name, reason in failures)
                  or f"no compute node{where}")
        super().__init__(f"No valid host was found. {detail}")
        self.failures, self.requested_host = tuple(failures), requested_host


class InstanceNotFound(ControlError):
    """No live instance with `key` as its uuid or name."""

    def __init__(self, key: str):
        super().__init__(f"instance {key!r} not found")
        self.key = key


class AmbiguousName(ControlError):
    """Several live instances are named `key` (`uuids`)."""

    def __init__(self, key: str, uuids: Sequence[str]):
        super().__init__(f"{len(uuids)} instances are named {key!r}")
        self.key, self.uuids = key, tuple(uuids)


class InstanceInvalidState(ControlError):
    """`action` is not allowed while the instance's `attr` ('vm_state' or 'task_state') is
    `state` (nova's InstanceInvalidState, 409)."""

    def __init__(self, uuid: str, action: str, attr: str, state: str | None):
        super().__init__(f"cannot {action} instance {uuid} while it is in {attr} {state}")
        self.uuid, self.action, self.attr, self.state = uuid, action, attr, state


class InstanceNotReady(ControlError):
    """The action needs the instance's host and the instance has none (still scheduling, or
    no valid host was found): nova's InstanceNotReady from its compute API's
    check_instance_host, which its API answers with 409 and these words."""

    http_status = 409

    def __init__(self, uuid: str, action: str):
        super().__init__(f"Instance {uuid} is not ready")
        self.uuid, self.action = uuid, action


class InstanceChanged(ControlError):
    """The instance changed between the read and the conditional save (`column` now holds
    `found`): another request or its host won the race; nothing was written."""

    def __init__(self, uuid: str, column: str | None, found: object):
        super().__init__(f"instance {uuid} changed meanwhile ({column} is now {found!r})")
        self.uuid, self.column, self.found = uuid, column, found
