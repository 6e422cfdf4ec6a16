"""Operator requests on the service registry (nova's os-services): find, enable, disable with a
reason, force down and lift it, delete. Each takes the caller's session and does its reads and
writes in that one transaction, the service row locked FOR UPDATE first; a refusal raises an
agent.control.errors type before anything is written.

Rules (nova's): a disable reason fits services.disabled_reason and may not start with the
agent's own 'AUTO:'; forced_down is not lifted while evacuations from the host are 'done'; a
service is not deleted while instances are on its host or migrations from or to it are
unfinished (its host's compute nodes are soft-deleted with it).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from agent.control.errors import (EvacuationsPending, ReasonReserved, ReasonTooLong,
                                  ServiceInUse, ServiceNotFound)
from agent.db import service_queries as q
from agent.db.service_queries import ServiceRecord
from agent.vocabulary import AUTO_PREFIX, MAX_REASON_LENGTH, canonical_binary


def find_service(session: Session, host: str, binary: str, *, lock: bool = False,
                 role: str | None = None) -> ServiceRecord:
    """The live service of `host` and `binary` (locked with `lock`); ServiceNotFound, naming
    the `role` when given. nova's 'nova-compute' names the compute binary."""
    record = q.find_service(session, host, canonical_binary(binary), lock=lock)
    if record is None:
        raise ServiceNotFound(host, binary, role)
    return record


def check_reason(reason: str | None) -> None:
    """ReasonTooLong beyond MAX_REASON_LENGTH characters; ReasonReserved for 'AUTO:...'."""
    if reason is None:
        return
    if len(reason) > MAX_REASON_LENGTH:
        raise ReasonTooLong(len(reason), MAX_REASON_LENGTH)
    if reason.startswith(AUTO_PREFIX.rstrip()):
        raise ReasonReserved(reason)


def set_disabled(session: Session, host: str, binary: str, disabled: bool,
                 reason: str | None = None) -> tuple[ServiceRecord, ServiceRecord]:
    """Enable (the reason cleared), or disable with an optional `reason`. Returns the row
    before and after."""
    if disabled:
        check_reason(reason)
    return _change(session, find_service(session, host, binary, lock=True),
                   disabled=disabled, disabled_reason=reason if disabled else None)


def set_forced_down(session: Session, host: str, binary: str,
                    forced_down: bool) -> tuple[ServiceRecord, ServiceRecord]:
    """Force the service down (it is shown down at once, so its instances can be evacuated),
    or lift that: EvacuationsPending while evacuations from the host are in status 'done'.
    Returns the row before and after."""
    service = find_service(session, host, binary, lock=True)
    if not forced_down:
        pending = q.count_done_evacuations(session, host)
        if pending:
            raise EvacuationsPending(host, binary, pending)
    return _change(session, service, forced_down=forced_down)


def delete_service(session: Session, host: str, binary: str) -> ServiceRecord:
    """Soft-delete the service and its host's compute nodes; ServiceInUse while instances are
    on the host or migrations from or to it are unfinished. Returns the row as it was."""
    service = find_service(session, host, binary, lock=True)
    instances = q.count_host_instances(session, host)
    migrations = q.count_unfinished_migrations(session, host)
    if instances or migrations:
        raise ServiceInUse(host, binary, instances, migrations)
    q.soft_delete_service(session, service.id, host)
    return service


def _change(session: Session, service: ServiceRecord,
            **values) -> tuple[ServiceRecord, ServiceRecord]:
    after = q.update_service(session, service.id, **values)
    assert after is not None  # the row is locked
    return service, after
