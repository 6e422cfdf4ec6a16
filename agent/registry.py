"""The service registry as the agent itself uses it: load or create this host's service row, and
the automatic disable/enable that the agent may apply to it.

Every change the agent makes on its own is one conditional UPDATE whose WHERE clause states the
condition, so the agent can never override or clear a disable that an operator set: an automatic
reason always starts with ``AUTO: `` and is only lifted when the row still carries exactly it.
Each function here is one step of the agent's own and owns its transaction; the statements are
agent.db.service_queries', on that session.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from agent.db import service_queries as q
from agent.db.service_queries import ServiceRecord
from agent.service_owner import claim_service
from agent.vocabulary import (AUTO_PREFIX, AUTO_STARTING, COMPUTE_BINARY, COMPUTE_TOPIC,
                              NEW_SERVICE_DISABLED)

LOG = logging.getLogger(__name__)


def load_service(db, host: str, binary: str = COMPUTE_BINARY) -> ServiceRecord | None:
    """The live (not soft-deleted) row for (host, binary), or None: one SELECT."""
    with db.sessions() as session:
        return q.find_service(session, host, binary)


def load_service_by_id(db, service_id: int) -> ServiceRecord | None:
    """The live row with this id, or None: one SELECT."""
    with db.sessions() as session:
        return q.load_service_by_id(session, service_id)


def register_service(db, host: str, *, binary: str = COMPUTE_BINARY, topic: str = COMPUTE_TOPIC,
                     enable_new: bool = True, starting: bool = True, agent_id: str | None = None,
                     service_down_time: float | None = None) -> ServiceRecord:
    """Load this host's service row, or create it (report_count 0).

    Two processes registering the same (host, binary) at once end with one row: the loser of
    the insert race hits the unique constraint and reads the winner's row. A new row is created
    disabled when `enable_new` is false. With `starting`, an enabled row is disabled with reason
    AUTO_STARTING until `finish_starting`, and so is a row that an earlier run of the agent left
    with an automatic reason (e.g. 'AUTO: connection to libvirt lost' when it stopped while
    libvirt was down): this run re-evaluates it. A row an operator disabled (or that
    enable_new_services created disabled) is left exactly as it is.

    With `service_down_time` (seconds), the row is first claimed for `agent_id` (the identity
    this agent's beats carry, see agent.service_owner): StartupError, and nothing changed, while
    another agent has beaten into it within that time.
    """
    record = load_service(db, host, binary)
    created = False
    if record is None:
        record, created = _create_service(db, host, binary, topic, enable_new, starting,
                                          agent_id)
    if service_down_time is not None and not created:
        claim_service(db, record.id, record.host, agent_id, service_down_time)
    if starting and record.disabled_reason != AUTO_STARTING and (
            not record.disabled or _is_auto(record.disabled_reason)):
        if _claim_for_start(db, record.id):
            if record.disabled:
                LOG.info("Service id %s was left disabled by an earlier run (%s); it is "
                         "re-evaluated by this start-up", record.id, record.disabled_reason)
            record = record._replace(disabled=True, disabled_reason=AUTO_STARTING)
        else:  # an operator's disable (or a delete) landed in between: read what is there
            record = load_service_by_id(db, record.id) or record
    return record


def _is_auto(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(AUTO_PREFIX)


def _claim_for_start(db, service_id: int) -> bool:
    """Disable with AUTO_STARTING if enabled or disabled for an automatic reason: one
    conditional UPDATE, so an operator's disable landing meanwhile is kept."""
    with db.sessions.begin() as session:
        return q.disable_if(session, service_id, AUTO_STARTING, or_reason_prefix=AUTO_PREFIX)


def _create_service(db, host: str, binary: str, topic: str, enable_new: bool,
                    starting: bool, agent_id: str | None) -> tuple[ServiceRecord, bool]:
    """The new row and True; or, when another process created it first, theirs and False."""
    if not enable_new:
        disabled, reason = True, NEW_SERVICE_DISABLED
    elif starting:
        disabled, reason = True, AUTO_STARTING
    else:
        disabled, reason = False, None
    try:
        with db.sessions.begin() as session:
            record = q.insert_service(session, host=host, binary=binary, topic=topic,
                                      disabled=disabled, disabled_reason=reason,
                                      last_seen_by=agent_id)
    except IntegrityError:
        # Another process created the row between our read and our insert: use theirs.
        record = load_service(db, host, binary)
        if record is None:  # pragma: no cover - the winner deleted it in between
            raise
        LOG.info("Service row for host %s binary %s was created concurrently (id %s); using it",
                 host, binary, record.id)
        return record, False
    if not enable_new:
        LOG.warning("Registered new service host %s binary %s (id %s) DISABLED: "
                    "enable_new_services = false; enable it with 'agent services enable "
                    "--host %s'", host, binary, record.id, host)
    else:
        LOG.info("Registered new service host %s binary %s (id %s)", host, binary, record.id)
    return record, True


def finish_starting(db, service_id: int) -> bool:
    """Re-enable the service if, and only if, it is still disabled with reason AUTO_STARTING.
    Returns whether it did."""
    return auto_enable(db, service_id, AUTO_STARTING)


def auto_disable(db, service_id: int, reason: str) -> bool:
    """Disable the service with an automatic `reason` (which must start with 'AUTO: '), only
    if it is currently enabled. Returns whether it did."""
    _check_auto_reason(reason)
    with db.sessions.begin() as session:
        changed = q.disable_if(session, service_id, reason)
    if changed:
        LOG.info("Service id %s disabled automatically: %s", service_id, reason)
    else:
        LOG.debug("Service id %s not auto-disabled (%s): already disabled or gone",
                  service_id, reason)
    return changed


def auto_enable(db, service_id: int, reason: str) -> bool:
    """Enable the service only if it is disabled with exactly the automatic `reason`: an
    operator's disable (any other reason, or none) is never cleared. Returns whether it did."""
    _check_auto_reason(reason)
    with db.sessions.begin() as session:
        changed = q.replace_reason_if(session, service_id, reason, None)
    if changed:
        LOG.info("Service id %s enabled again (was disabled: %s)", service_id, reason)
    else:
        LOG.info("Service id %s left as it is: not disabled with reason %r (an operator's "
                 "disable is kept)", service_id, reason)
    return changed


def replace_auto_reason(db, service_id: int, old: str, new: str) -> bool:
    """Change the disable reason from the automatic `old` to the automatic `new`, only if the
    service is still disabled with `old` (an operator's reason set meanwhile is kept). Returns
    whether it did."""
    _check_auto_reason(old)
    _check_auto_reason(new)
    with db.sessions.begin() as session:
        return q.replace_reason_if(session, service_id, old, new)


def _check_auto_reason(reason: str) -> None:
    if not reason.startswith(AUTO_PREFIX):
        raise ValueError(f"automatic disable reason {reason!r} must start with {AUTO_PREFIX!r}")

