"""SQLAlchemy 2.0 typed models of the shared tables (nova's names and meanings): services,
compute_nodes, instances, migrations, and for the operations path flavors, instance actions with
their events, and instance faults.

Times are UTC, without time zone, and every time the agent writes for liveness comes from the
database server's clock (`utcnow()`), never the host's. Soft-deleted rows carry `deleted_at` and
`deleted` = their id, so (host, binary, deleted) stays unique while a deleted host can register
again.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuid_lib

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer,
                        MetaData, String,
                        Text, UniqueConstraint)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import FunctionElement

# Microsecond precision everywhere (MySQL/MariaDB DATETIME defaults to whole seconds).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class utcnow(FunctionElement):  # noqa: N801 - reads like the SQL function it renders
    """The database server's current UTC time, with sub-second precision where available."""

    type = Timestamp
    inherit_cache = True


@compiles(utcnow)
def _utcnow_default(element, compiler, **kw):  # pragma: no cover - other dialects
    return "CURRENT_TIMESTAMP"


@compiles(utcnow, "postgresql")
def _utcnow_postgresql(element, compiler, **kw):
    # statement_timestamp(): the time of this statement, not of the transaction's start.
    return "(statement_timestamp() AT TIME ZONE 'UTC')"


@compiles(utcnow, "mysql")
@compiles(utcnow, "mariadb")
def _utcnow_mysql(element, compiler, **kw):
    return "UTC_TIMESTAMP(6)"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element, compiler, **kw):
    return "STRFTIME('%Y-%m-%d %H:%M:%f', 'now')"


def new_uuid() -> str:
    return str(uuid_lib.uuid4())


# Constraints get stable names on every backend (nova's style), so later migrations can drop or
# alter them by name instead of guessing each server's generated one.
NAMING_CONVENTION = {
    "uq": "uniq_%(table_name)s0%(column_0_N_name)s",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=utcnow())
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, onupdate=utcnow())


class SoftDeleteMixin:
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    deleted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Service(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", "deleted",
                                       name="uniq_services0host0binary0deleted"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str | None] = mapped_column(String(255))
    report_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Set from the database clock by every beat: the liveness timestamp.
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # The host's own clock at that beat; host clock offset = this - last_seen_up.
    last_seen_host_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # The identity of the agent that sent the last beat (its node's uuid, from compute_id): a
    # second agent running as the same host is refused, and the first one notices one that
    # beats into its row anyway.
    last_seen_by: Mapped[str | None] = mapped_column(String(36))
    # When that agent claimed the row at its start-up (database clock).
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class ComputeNode(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "compute_nodes"
    # One live row per hypervisor: a second host cannot register the same hypervisor.
    __table_args__ = (Index("compute_nodes_host_idx", "host"),
                      UniqueConstraint("hypervisor_hostname", "deleted",
                                       name="uniq_compute_nodes0hypervisor_hostname0deleted"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    service_id: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    local_gb: Mapped[int] = mapped_column(Integer, default=0)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(Integer, default=0)
    local_gb_used: Mapped[int] = mapped_column(Integer, default=0)
    free_ram_mb: Mapped[int | None] = mapped_column(Integer)
    free_disk_gb: Mapped[int | None] = mapped_column(Integer)
    disk_available_least: Mapped[int | None] = mapped_column(Integer)
    current_workload: Mapped[int | None] = mapped_column(Integer)
    running_vms: Mapped[int | None] = mapped_column(Integer)
    hypervisor_type: Mapped[str] = mapped_column(String(255), default="")
    hypervisor_version: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_info: Mapped[str] = mapped_column(Text, default="")
    stats: Mapped[str | None] = mapped_column(Text)  # JSON object of str -> str
    host_ip: Mapped[str | None] = mapped_column(String(64))
    cpu_allocation_ratio: Mapped[float | None] = mapped_column(Float)
    ram_allocation_ratio: Mapped[float | None] = mapped_column(Float)
    disk_allocation_ratio: Mapped[float | None] = mapped_column(Float)
    # What the host keeps for itself (placement's inventory 'reserved'), as last audited: the
    # scheduler adds the flavors of the node's instances to these (NULL before the first audit).
    reserved_host_cpus: Mapped[int | None] = mapped_column(Integer)
    reserved_host_memory_mb: Mapped[int | None] = mapped_column(Integer)
    reserved_host_disk_mb: Mapped[int | None] = mapped_column(Integer)


class Instance(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "instances"
    __table_args__ = (Index("instances_host_idx", "host"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    node: Mapped[str | None] = mapped_column(String(255))
    vm_state: Mapped[str | None] = mapped_column(String(255))
    task_state: Mapped[str | None] = mapped_column(String(255))
    power_state: Mapped[int | None] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)  # MiB, as nova
    network_info: Mapped[str | None] = mapped_column(Text)  # JSON list of VIFs
    project_id: Mapped[str | None] = mapped_column(String(255))
    os_type: Mapped[str | None] = mapped_column(String(255))
    # vm_state before a resize began (nova keeps it in system_metadata): a revert powers the
    # guest on unless it was stopped.
    old_vm_state: Mapped[str | None] = mapped_column(String(255))
    # Flavors of an in-progress resize, JSON {vcpus, memory_mb, root_gb, ephemeral_gb, swap}.
    old_flavor: Mapped[str | None] = mapped_column(Text)
    new_flavor: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(255))
    image_ref: Mapped[str | None] = mapped_column(String(255))
    # The flavor the instance was launched with: its flavors.id, and a copy of its fields, JSON
    # {flavorid, name, vcpus, memory_mb, root_gb, ephemeral_gb, swap} (a flavor deleted later
    # still describes its instances, as nova's instance_extra.flavor).
    instance_type_id: Mapped[int | None] = mapped_column(Integer)
    flavor: Mapped[str | None] = mapped_column(Text)
    launched_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Migration(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "migrations"
    __table_args__ = (Index("migrations_source_compute_idx", "source_compute", "status"),
                      Index("migrations_dest_compute_idx", "dest_compute", "status"),
                      Index("migrations_instance_uuid_idx", "instance_uuid"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    source_compute: Mapped[str | None] = mapped_column(String(255))
    dest_compute: Mapped[str | None] = mapped_column(String(255))
    source_node: Mapped[str | None] = mapped_column(String(255))
    dest_node: Mapped[str | None] = mapped_column(String(255))
    migration_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))


class Flavor(Base):
    """A flavor (nova's API database `flavors`): the size of an instance. `flavorid` is the id
    the API shows; `id` is internal."""

    __tablename__ = "flavors"
    __table_args__ = (UniqueConstraint("flavorid", name="uniq_flavors0flavorid"),
                      UniqueConstraint("name", name="uniq_flavors0name"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flavorid: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    swap: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # MiB
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
    vcpu_weight: Mapped[int | None] = mapped_column(Integer)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    is_public: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=utcnow())
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, onupdate=utcnow())


class InstanceAction(TimestampMixin, SoftDeleteMixin, Base):
    """One user-visible action on an instance (create, stop, reboot, ...), keyed by the request
    id the API returned: "what happened to my instance, and which request did it"."""

    __tablename__ = "instance_actions"
    __table_args__ = (Index("instance_uuid_idx", "instance_uuid"),
                      Index("instance_actions_instance_uuid_request_id_idx", "instance_uuid",
                            "request_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str | None] = mapped_column(String(255))
    instance_uuid: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finish_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    message: Mapped[str | None] = mapped_column(String(255))


class InstanceActionEvent(TimestampMixin, SoftDeleteMixin, Base):
    """One step of an action on a service (`compute_stop_instance` on the agent, ...), with its
    result ('Success' or 'Error') and the traceback of a failure."""

    __tablename__ = "instance_actions_events"
    __table_args__ = (Index("instance_actions_events_action_id_idx", "action_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str | None] = mapped_column(String(255))
    action_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("instance_actions.id", name="instance_actions_events_action_id_fkey"))
    start_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finish_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    result: Mapped[str | None] = mapped_column(String(255))
    traceback: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)


class InstanceFault(TimestampMixin, SoftDeleteMixin, Base):
    """Why an instance went to ERROR (nova's instance_faults): code, message, details."""

    __tablename__ = "instance_faults"
    __table_args__ = (Index("instance_faults_instance_uuid_deleted_created_at_idx",
                            "instance_uuid", "deleted", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_uuid: Mapped[str | None] = mapped_column(String(36))
    code: Mapped[int] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
