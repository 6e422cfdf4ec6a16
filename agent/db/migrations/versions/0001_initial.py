"""Initial schema: services, compute_nodes, instances, migrations.

Revision ID: 0001
Revises: (none)

Self-contained on purpose: it does not import agent.db.models, so later changes to the models
cannot change what this revision creates.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Microsecond precision on every backend (MySQL/MariaDB DATETIME would keep whole seconds).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

# The database server's current UTC time, as a column default, per dialect.
_UTC_NOW_SQL = {
    "postgresql": "(statement_timestamp() AT TIME ZONE 'UTC')",
    "mysql": "(UTC_TIMESTAMP(6))",
    "mariadb": "(UTC_TIMESTAMP(6))",
    "sqlite": "(STRFTIME('%Y-%m-%d %H:%M:%f', 'now'))",
}


def _utc_now() -> sa.TextClause:
    return sa.text(_UTC_NOW_SQL.get(op.get_bind().dialect.name, "CURRENT_TIMESTAMP"))


def _audit_columns() -> list[sa.Column]:
    """created_at/updated_at/deleted_at/deleted, shared by the four tables."""
    return [
        sa.Column("created_at", Timestamp, server_default=_utc_now(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=True),
        sa.Column("deleted_at", Timestamp, nullable=True),
        sa.Column("deleted", sa.Integer(), server_default="0", nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=True),
        sa.Column("report_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("forced_down", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("last_seen_up", Timestamp, nullable=True),
        sa.Column("last_seen_host_time", Timestamp, nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("uuid", name="uniq_services0uuid"),
        sa.UniqueConstraint("host", "binary", "deleted", name="uniq_services0host0binary0deleted"),
    )

    op.create_table(
        "compute_nodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("hypervisor_hostname", sa.String(255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("local_gb", sa.Integer(), nullable=False),
        sa.Column("vcpus_used", sa.Integer(), nullable=False),
        sa.Column("memory_mb_used", sa.Integer(), nullable=False),
        sa.Column("local_gb_used", sa.Integer(), nullable=False),
        sa.Column("free_ram_mb", sa.Integer(), nullable=True),
        sa.Column("free_disk_gb", sa.Integer(), nullable=True),
        sa.Column("disk_available_least", sa.Integer(), nullable=True),
        sa.Column("current_workload", sa.Integer(), nullable=True),
        sa.Column("running_vms", sa.Integer(), nullable=True),
        sa.Column("hypervisor_type", sa.String(255), nullable=False),
        sa.Column("hypervisor_version", sa.BigInteger(), nullable=False),
        sa.Column("cpu_info", sa.Text(), nullable=False),
        sa.Column("stats", sa.Text(), nullable=True),
        sa.Column("host_ip", sa.String(64), nullable=True),
        sa.Column("cpu_allocation_ratio", sa.Float(), nullable=True),
        sa.Column("ram_allocation_ratio", sa.Float(), nullable=True),
        sa.Column("disk_allocation_ratio", sa.Float(), nullable=True),
        *_audit_columns(),
        sa.UniqueConstraint("uuid", name="uniq_compute_nodes0uuid"),
    )
    op.create_index("compute_nodes_host_idx", "compute_nodes", ["host"])

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("vm_state", sa.String(255), nullable=True),
        sa.Column("task_state", sa.String(255), nullable=True),
        sa.Column("power_state", sa.Integer(), nullable=True),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("root_gb", sa.Integer(), nullable=False),
        sa.Column("ephemeral_gb", sa.Integer(), nullable=False),
        sa.Column("swap", sa.Integer(), nullable=False),
        sa.Column("network_info", sa.Text(), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("os_type", sa.String(255), nullable=True),
        sa.Column("old_vm_state", sa.String(255), nullable=True),
        sa.Column("old_flavor", sa.Text(), nullable=True),
        sa.Column("new_flavor", sa.Text(), nullable=True),
        *_audit_columns(),
        sa.UniqueConstraint("uuid", name="uniq_instances0uuid"),
    )
    op.create_index("instances_host_idx", "instances", ["host"])

    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("source_compute", sa.String(255), nullable=True),
        sa.Column("dest_compute", sa.String(255), nullable=True),
        sa.Column("source_node", sa.String(255), nullable=True),
        sa.Column("dest_node", sa.String(255), nullable=True),
        sa.Column("migration_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("uuid", name="uniq_migrations0uuid"),
    )
    op.create_index("migrations_source_compute_idx", "migrations", ["source_compute", "status"])
    op.create_index("migrations_dest_compute_idx", "migrations", ["dest_compute", "status"])
    op.create_index("migrations_instance_uuid_idx", "migrations", ["instance_uuid"])


def downgrade() -> None:
    for table in ("migrations", "instances", "compute_nodes", "services"):
        op.drop_table(table)
