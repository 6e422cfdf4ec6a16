"""One agent per host: which agent runs a service row.

Every beat carries the identity of the agent that sends it (`services.last_seen_by`: its node's
uuid, from `state_path/compute_id`, which is the same across restarts of one installation and
differs between two machines). At start-up the agent claims the row for its identity: refused
while another identity has beaten into it within `service_down_time`, so a second agent started
with the same `host` (another machine, or a copied configuration with its own state directory)
stops instead of adopting the first one's row, while an agent restarted right after a crash
(same state directory, same identity) is not refused. The claim is one compare-and-set UPDATE on
what was read, so of two agents starting at once one claims and the other, reading again, finds
the row taken.

`other_agent` decides (pure); `claim_service` reads and writes.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from agent.db import service_queries
from agent.errors import StartupError

LOG = logging.getLogger(__name__)

# A claim that keeps losing its compare-and-set means something beats into the row all the
# time: that is the answer, read once more; three reads are plenty.
CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class RowOwner:
    """What a service row says about the agent that runs it, and the database's time."""

    host: str
    service_id: int
    last_seen_by: str | None
    last_seen_up: dt.datetime | None
    started_at: dt.datetime | None
    report_count: int
    db_now: dt.datetime


def other_agent(row: RowOwner, agent_id: str | None, service_down_time: float) -> str | None:
    """Why this agent must not take the row, or None when it may: the row was never claimed
    with an identity, was last claimed by `agent_id` (a restart), or has been quiet (no beat,
    no claim) for more than `service_down_time` seconds. A beat in the future (the database
    clock was set back) counts as recent."""
    if row.last_seen_by is None or row.last_seen_by == agent_id:
        return None
    last = row.last_seen_up or row.started_at
    if last is None:
        return None
    age = (row.db_now - last).total_seconds()
    if age > service_down_time:
        return None
    since = (f"since {_when(row.started_at)}" if row.started_at is not None
             else f"since at least {_when(last)}")
    return (f"host {row.host!r} is already run by another agent (identity {row.last_seen_by}, "
            f"{since}; its last beat into service id {row.service_id} was {max(age, 0):.0f} s "
            f"ago); this agent's identity is {agent_id or 'none'}: refusing to start (nothing "
            "was changed). Two agents must not run as one host: stop the other one, or give "
            "this one a 'host' of its own; if the other one is gone, start again once its row "
            f"has been quiet for service_down_time ({service_down_time:g} s)")


def intruder_message(host: str | None, service_id: int, intruder: str | None,
                     agent_id: str | None) -> str:
    """The error a running agent logs when another identity beat into its row."""
    name = f"host {host!r}" if host else f"service id {service_id}"
    return (f"another agent (identity {intruder or 'none'}) is beating into the service row of "
            f"{name} (id {service_id}), which this agent (identity {agent_id or 'none'}) runs: "
            "two agents are running as one host; stop the one that should not run")


def read_owner(db, service_id: int) -> RowOwner | None:
    """The live row's owner fields and the database's time, in one SELECT (None: no live row)."""
    with db.sessions() as session:
        found = service_queries.load_service_and_clock(session, service_id)
    if found is None:
        return None
    row, db_now = found
    return RowOwner(row.host, service_id, row.last_seen_by, row.last_seen_up, row.started_at,
                    row.report_count, db_now)


def claim_service(db, service_id: int, host: str, agent_id: str | None,
                  service_down_time: float) -> None:
    """Claim the row for `agent_id` at start-up: last_seen_by, started_at and last_seen_up set
    in one UPDATE conditional on the owner and report_count read just before. Raises
    StartupError (the row unchanged) when another agent runs it (see `other_agent`)."""
    for _attempt in range(CLAIM_ATTEMPTS):
        owner = read_owner(db, service_id)
        if owner is None:
            raise StartupError(f"the service row of host {host!r} (id {service_id}) was "
                               "deleted during start-up; start again to register anew")
        refusal = other_agent(owner, agent_id, service_down_time)
        if refusal is not None:
            raise StartupError(refusal)
        with db.sessions.begin() as session:
            if service_queries.claim_for_agent(session, service_id, agent_id,
                                               last_seen_by=owner.last_seen_by,
                                               report_count=owner.report_count):
                if owner.last_seen_by not in (None, agent_id):
                    LOG.warning("service id %s of host %s was last run by agent %s, quiet for "
                                "longer than service_down_time: taken over by this agent (%s)",
                                service_id, host, owner.last_seen_by, agent_id)
                return
    raise StartupError(f"the service row of host {host!r} (id {service_id}) kept changing while "
                       "this agent claimed it: another agent is starting or running as this "
                       "host; refusing to start (nothing was changed)")


def _when(value: dt.datetime) -> str:
    return value.replace(microsecond=0).isoformat(sep=" ") + " UTC"
