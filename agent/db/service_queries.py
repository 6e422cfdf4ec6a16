"""Operator requests on the service registry (nova's os-services): list, enable, disable,
force down, delete. Each request is one transaction; a refusal changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update

from agent.vocabulary import EVACUATION, EVACUATION_DONE, FINISHED_MIGRATION_STATUSES
from agent.db.models import ComputeNode, Instance, Migration, Service, utcnow
from agent.display import plural
from agent.errors import ServiceError, ServiceNotFound

MAX_REASON_LENGTH = 255  # services.disabled_reason is String(255)


@dataclass(frozen=True)
class ServiceRow:
    """A service row as the operator sees it."""

    id: int
    uuid: str
    host: str
    binary: str
    topic: str | None
    report_count: int
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    last_seen_up: dt.datetime | None
    last_seen_host_time: dt.datetime | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


_COLUMNS = (Service.id, Service.uuid, Service.host, Service.binary, Service.topic,
            Service.report_count, Service.disabled, Service.disabled_reason,
            Service.forced_down, Service.last_seen_up, Service.last_seen_host_time,
            Service.created_at, Service.updated_at)


def service_row(values) -> ServiceRow:
    """From a result row or a Service object (same attribute names)."""
    return ServiceRow(id=values.id, uuid=values.uuid, host=values.host, binary=values.binary,
                      topic=values.topic, report_count=values.report_count,
                      disabled=bool(values.disabled), disabled_reason=values.disabled_reason,
                      forced_down=bool(values.forced_down), last_seen_up=values.last_seen_up,
                      last_seen_host_time=values.last_seen_host_time,
                      created_at=values.created_at, updated_at=values.updated_at)


def list_services(db, host: str | None = None,
                  binary: str | None = None) -> tuple[dt.datetime | None, list[ServiceRow]]:
    """The live service rows (optionally of one host / binary) and the database's current UTC
    time, read in the same statement so every verdict uses one clock. db_now is None when no
    row matches."""
    stmt = select(*_COLUMNS, utcnow().label("db_now")).where(Service.deleted == 0)
    if host is not None:
        stmt = stmt.where(Service.host == host)
    if binary is not None:
        stmt = stmt.where(Service.binary == binary)
    with db.engine.connect() as conn:
        rows = conn.execute(stmt.order_by(Service.id)).all()
    db_now = rows[0].db_now if rows else None
    return db_now, [service_row(r) for r in rows]


def check_reason(reason: str | None) -> None:
    if reason is None:
        return
    if len(reason) > MAX_REASON_LENGTH:
        raise ServiceError(f"--reason is {len(reason)} characters long; at most "
                           f"{MAX_REASON_LENGTH} are allowed")
    if reason.startswith("AUTO:"):
        raise ServiceError(f"--reason {reason[:40]!r}: reasons starting with 'AUTO:' are "
                           "reserved for the agent's own automatic disables")


def set_disabled(db, host: str, binary: str, disabled: bool,
                 reason: str | None = None) -> tuple[ServiceRow, ServiceRow]:
    """Enable, or disable with an optional reason. Returns the row before and after."""
    if disabled:
        check_reason(reason)
    return _change(db, host, binary, disabled=disabled,
                   disabled_reason=reason if disabled else None)


def set_forced_down(db, host: str, binary: str, forced_down: bool) -> tuple[ServiceRow, ServiceRow]:
    """Force the service down (it is shown down at once, so its instances can be evacuated), or
    lift that. Lifting is refused while evacuations from the host are in status 'done': the
    host would come back and run guests that were rebuilt elsewhere."""
    with db.sessions.begin() as session:
        service = find_service(session, host, binary, lock=True)
        if not forced_down:
            pending = session.scalar(
                select(func.count()).select_from(Migration)
                .where(Migration.deleted == 0, Migration.source_compute == host,
                       Migration.migration_type == EVACUATION,
                       Migration.status == EVACUATION_DONE))
            if pending:
                raise ServiceError(
                    f"cannot unset forced_down for host {host!r} binary {binary!r}: "
                    f"{plural(pending, 'evacuation migration')} from this host "
                    f"{'is' if pending == 1 else 'are'} still in status 'done'; "
                    "start the agent on the host so it destroys the evacuated guests (their "
                    "migrations become 'completed'), then retry")
        return _apply(session, service, forced_down=forced_down)


def delete_service(db, host: str, binary: str) -> ServiceRow:
    """Soft-delete the service row (and the host's compute nodes). Refused while instances are
    on the host or migrations from or to it are in progress."""
    with db.sessions.begin() as session:
        service = find_service(session, host, binary, lock=True)
        instances = session.scalar(
            select(func.count()).select_from(Instance)
            .where(Instance.deleted == 0, Instance.host == host))
        migrations = session.scalar(
            select(func.count()).select_from(Migration)
            .where(Migration.deleted == 0,
                   or_(Migration.source_compute == host, Migration.dest_compute == host),
                   Migration.status.not_in(FINISHED_MIGRATION_STATUSES)))
        problems = []
        if instances:
            problems.append(f"{plural(instances, 'instance')} "
                            f"{'is' if instances == 1 else 'are'} on this host")
        if migrations:
            problems.append(f"{plural(migrations, 'migration')} from or to this host "
                            f"{'is' if migrations == 1 else 'are'} in progress")
        if problems:
            raise ServiceError(f"cannot delete service host {host!r} binary {binary!r}: "
                               + " and ".join(problems)
                               + "; move or delete them first")
        before = service_row(service)
        session.execute(update(Service).where(Service.id == service.id)
                        .values(deleted=service.id, deleted_at=utcnow()))
        session.execute(update(ComputeNode)
                        .where(ComputeNode.host == host, ComputeNode.deleted == 0)
                        .values(deleted=ComputeNode.id, deleted_at=utcnow()))
        return before


def _change(db, host: str, binary: str, **values) -> tuple[ServiceRow, ServiceRow]:
    with db.sessions.begin() as session:
        return _apply(session, find_service(session, host, binary, lock=True), **values)


def _apply(session, service: Service, **values) -> tuple[ServiceRow, ServiceRow]:
    before = service_row(service)
    session.execute(update(Service).where(Service.id == service.id).values(**values))
    after = service_row(session.get(Service, service.id, populate_existing=True))
    return before, after


def find_service(session, host: str, binary: str, *, lock: bool = False,
                 role: str | None = None) -> Service:
    """The live service row of `host` and `binary` (locked FOR UPDATE with `lock`); raises
    ServiceNotFound, naming the `role` ("source host", ...) when given."""
    stmt = select(Service).where(Service.host == host, Service.binary == binary,
                                 Service.deleted == 0)
    if lock:
        stmt = stmt.with_for_update()
    service = session.scalars(stmt).one_or_none()
    if service is None:
        what = f"{role} {host!r}: no" if role else f"no service with host {host!r} and"
        raise ServiceNotFound(f"{what} service with binary {binary!r} in the service "
                              "registry ('agent services list' shows the registered ones)")
    return service

