"""The command line's words for the control plane's refusals (agent.control.errors): what was
refused and the command to run next. `control_session` runs one command's request in one
transaction and turns a refusal into one error line (exit status 1)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from agent.control import errors as e
from agent.display import plural
from agent.values import shown
from agent.errors import ServiceError, UsageError


def _is_are(count: int) -> str:
    return "is" if count == 1 else "are"


def _not_found(exc: e.ServiceNotFound) -> str:
    what = (f"{exc.role} {exc.host!r}: no" if exc.role
            else f"no service with host {exc.host!r} and")
    return (f"{what} service with binary {exc.binary!r} in the service registry "
            "('agent services list' shows the registered ones)")


def _in_use(exc: e.ServiceInUse) -> str:
    problems = []
    if exc.instances:
        problems.append(f"{plural(exc.instances, 'instance')} {_is_are(exc.instances)} on "
                        "this host")
    if exc.migrations:
        problems.append(f"{plural(exc.migrations, 'migration')} from or to this host "
                        f"{_is_are(exc.migrations)} in progress")
    return (f"cannot delete service host {exc.host!r} binary {exc.binary!r}: "
            + " and ".join(problems) + "; move or delete them first")


def _is_up(exc: e.ServiceIsUp) -> str:
    seen = "" if exc.age_s is None else f" (last seen {exc.age_s:.0f} s ago)"
    return (f"service {exc.binary} on host {exc.host} is up{seen}: force it down first with "
            f"'agent services force-down --host {exc.host}' or wait until it is down "
            f"(service_down_time {exc.service_down_time:g} s)")


def _nodes(exc: e.DestinationNodes) -> str:
    if not exc.nodes:
        return (f"destination host {exc.host} has no compute node yet: wait until its agent "
                "has finished start-up (its first resource audit creates the node)")
    return (f"destination host {exc.host} has {len(exc.nodes)} compute nodes "
            f"({', '.join(exc.nodes)}); evacuating to a host with several nodes is not "
            "supported")


WORDS: dict[type, Callable] = {
    e.ServiceNotFound: _not_found,
    e.ReasonTooLong: lambda exc: (f"--reason is {exc.length} characters long; at most "
                                  f"{exc.limit} are allowed"),
    e.ReasonReserved: lambda exc: (f"--reason {exc.reason[:40]!r}: reasons starting with "
                                   "'AUTO:' are reserved for the agent's own automatic "
                                   "disables"),
    e.EvacuationsPending: lambda exc: (
        f"cannot unset forced_down for host {exc.host!r} binary {exc.binary!r}: "
        f"{plural(exc.count, 'evacuation migration')} from this host {_is_are(exc.count)} "
        "still in status 'done'; start the agent on the host so it destroys the evacuated "
        "guests (their migrations become 'completed'), then retry"),
    e.ServiceInUse: _in_use,
    e.SameHost: lambda exc: (f"cannot evacuate host {exc.host!r} to itself: --to must name "
                             "another host"),
    e.ServiceIsUp: _is_up,
    e.DestinationForcedDown: lambda exc: (
        f"destination host {exc.host} is forced down: lift it with 'agent services "
        f"force-down --unset --host {exc.host}' or choose another host"),
    e.DestinationDown: lambda exc: (f"destination host {exc.host} is down ({exc.reason}): "
                                    "its agent must be running to take the instances"),
    e.DestinationDisabled: lambda exc: (
        f"destination host {exc.host} is disabled"
        f"{f' ({exc.reason})' if exc.reason else ''}: enable it with 'agent services enable "
        f"--host {exc.host}' or choose another host"),
    e.DestinationNodes: _nodes,
    e.FlavorNotFound: lambda exc: (f"no flavor with id or name {exc.key!r} ('agent flavor "
                                   "list' shows them)"),
    e.FlavorExists: lambda exc: (f"a flavor with {exc.field} {exc.value!r} already exists; "
                                 "choose another"),
    e.NoValidHost: lambda exc: str(exc),
    e.InstanceNotFound: lambda exc: (f"no instance with id or name {exc.key!r} ('agent server "
                                     "list' shows them)"),
    e.AmbiguousName: lambda exc: (f"{len(exc.uuids)} instances are named {exc.key!r} "
                                  f"({', '.join(exc.uuids)}): name one by its id"),
    e.InstanceInvalidState: lambda exc: (f"cannot {exc.action} instance {exc.uuid} while it "
                                         f"is in {exc.attr} {exc.state}"),
    e.InstanceNotReady: lambda exc: (f"cannot {exc.action} instance {exc.uuid}: it has no "
                                     "host (still scheduling, or no valid host was found)"),
    e.InstanceChanged: lambda exc: (f"instance {exc.uuid} changed meanwhile ({exc.column} is "
                                    f"now {exc.found!r}); nothing was done, look and retry"),
    e.InvalidValue: lambda exc: f"{exc.field} {shown(exc.value)}: expected {exc.expected}",
}


def explain(exc: e.ControlError) -> str:
    """The error line for a refusal (its plain str() for a type without words here)."""
    words = WORDS.get(type(exc))
    return words(exc) if words is not None else str(exc)


@contextmanager
def refusals_in_words() -> Iterator[None]:
    """A refusal raised inside becomes ServiceError with the command line's words."""
    try:
        yield
    except e.ControlError as exc:
        error = UsageError if exc.exit_code == 2 else ServiceError  # bad input: exit 2
        raise error(explain(exc)) from None


@contextmanager
def control_session(db) -> Iterator[object]:
    """One session and transaction for one command's request, committed when the block ends;
    a refusal rolls it back and becomes ServiceError with the command line's words."""
    with refusals_in_words(), db.sessions.begin() as session:
        yield session
