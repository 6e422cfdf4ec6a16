"""The start-up sequence every agent runs: the daemon, `agent --once` and each simulated host of
`agent fleet` (DESIGN.md "Startup sequence", steps 3-4).

`register_and_beat(conf, db, host_work)`: the checks that can refuse a start-up (the host work's
`prepare()`: the driver's init_host and the node identity) run before the service row is
created or claimed, so a refused start leaves no row behind; then the row is registered
('AUTO: starting', refused while another agent beats into it), handed to the host work, whose
node identity is written down, and the first beat goes out carrying that identity. What comes
next is the caller's: the daemon starts the heartbeat thread and runs the host work on a thread
of its own, `--once` runs it in line, the fleet beats from its shared scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from agent.heartbeat import Heartbeat
    from agent.host_work import HostWork
    from agent.registry import ServiceRecord


@dataclass(frozen=True)
class Registered:
    """A registered agent: its service row, its heartbeat (not started: the caller beats
    from then on) and whether the first beat went through."""

    service: "ServiceRecord"
    heartbeat: "Heartbeat"
    first_beat_ok: bool


def register_and_beat(conf, db, host_work: "HostWork | None", *,
                      status: Callable[[str], None] = lambda _text: None,
                      heartbeat_name: str = "heartbeat",
                      initial_delay: float = 0.0) -> Registered:
    """prepare(), register, registered(), first beat (see the module docstring). `status` hears
    each step (the daemon tells systemd); `heartbeat_name` names the heartbeat's thread and log
    lines; `initial_delay` is the heartbeat thread's wait before its first beat of its own.
    Raises what prepare() or registration raise (AgentError: the caller stops)."""
    from agent.heartbeat import Heartbeat
    from agent.registry import register_service

    agent_id = None
    if host_work is not None:
        status("checking the host before registering")
        agent_id = host_work.prepare()
    status("registering the service")
    service = register_service(db, conf.host, enable_new=conf.enable_new_services,
                               starting=True, agent_id=agent_id,
                               service_down_time=conf.service_down_time)
    if host_work is not None:
        host_work.registered(service)
    heartbeat = Heartbeat(db, service.id, conf.report_interval, initial_delay=initial_delay,
                          name=heartbeat_name, host=service.host, binary=service.binary,
                          agent_id=agent_id)
    return Registered(service, heartbeat, bool(heartbeat.beat()))
