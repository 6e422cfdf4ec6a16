"""The operations path: flavors, instance actions and their events, instance faults, and the
instance columns a launch records.

Revision ID: 0003
Revises: 0002

Columns keep nova's names and meanings. `flavors` gets nova's default flavors m1.tiny to
m1.xlarge (flavorid 1 to 5), so a new database can launch instances at once; an operator may
delete or disable them. Self-contained, as 0001: it does not import agent.db.models.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

_UTC_NOW_SQL = {
    "postgresql": "(statement_timestamp() AT TIME ZONE 'UTC')",
    "mysql": "(UTC_TIMESTAMP(6))",
    "mariadb": "(UTC_TIMESTAMP(6))",
    "sqlite": "(STRFTIME('%Y-%m-%d %H:%M:%f', 'now'))",
}

# nova's default flavors: (name, flavorid, vcpus, memory_mb, root_gb).
DEFAULT_FLAVORS = (
    ("m1.tiny", "1", 1, 512, 1),
    ("m1.small", "2", 1, 2048, 20),
    ("m1.medium", "3", 2, 4096, 40),
    ("m1.large", "4", 4, 8192, 80),
    ("m1.xlarge", "5", 8, 16384, 160),
)


def _utc_now() -> sa.TextClause:
    return sa.text(_UTC_NOW_SQL.get(op.get_bind().dialect.name, "CURRENT_TIMESTAMP"))


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", Timestamp, server_default=_utc_now(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=True),
    ]


def _soft_delete() -> list[sa.Column]:
    return [
        sa.Column("deleted_at", Timestamp, nullable=True),
        sa.Column("deleted", sa.Integer(), server_default="0", nullable=False),
    ]


def upgrade() -> None:
    flavors = op.create_table(
        "flavors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("flavorid", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("root_gb", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ephemeral_gb", sa.Integer(), server_default="0", nullable=False),
        sa.Column("swap", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rxtx_factor", sa.Float(), server_default="1", nullable=False),
        sa.Column("vcpu_weight", sa.Integer(), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("is_public", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        *_times(),
        sa.UniqueConstraint("flavorid", name="uniq_flavors0flavorid"),
        sa.UniqueConstraint("name", name="uniq_flavors0name"),
    )
    op.bulk_insert(flavors, [
        {"name": name, "flavorid": flavorid, "vcpus": vcpus, "memory_mb": memory_mb,
         "root_gb": root_gb, "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0,
         "disabled": False, "is_public": True}
        for name, flavorid, vcpus, memory_mb, root_gb in DEFAULT_FLAVORS])

    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("action", sa.String(255), nullable=True),
        sa.Column("instance_uuid", sa.String(36), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("start_time", Timestamp, nullable=True),
        sa.Column("finish_time", Timestamp, nullable=True),
        sa.Column("message", sa.String(255), nullable=True),
        *_times(),
        *_soft_delete(),
    )
    op.create_index("instance_uuid_idx", "instance_actions", ["instance_uuid"])
    op.create_index("instance_actions_instance_uuid_request_id_idx", "instance_actions",
                    ["instance_uuid", "request_id"])

    op.create_table(
        "instance_actions_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event", sa.String(255), nullable=True),
        sa.Column("action_id", sa.Integer(), sa.ForeignKey(
            "instance_actions.id", name="instance_actions_events_action_id_fkey"),
            nullable=True),
        sa.Column("start_time", Timestamp, nullable=True),
        sa.Column("finish_time", Timestamp, nullable=True),
        sa.Column("result", sa.String(255), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        *_times(),
        *_soft_delete(),
    )
    op.create_index("instance_actions_events_action_id_idx", "instance_actions_events",
                    ["action_id"])

    op.create_table(
        "instance_faults",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("instance_uuid", sa.String(36), nullable=True),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(255), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        *_times(),
        *_soft_delete(),
    )
    op.create_index("instance_faults_instance_uuid_deleted_created_at_idx", "instance_faults",
                    ["instance_uuid", "deleted", "created_at"])

    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("user_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("image_ref", sa.String(255), nullable=True))
        batch.add_column(sa.Column("instance_type_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("flavor", sa.Text(), nullable=True))
        batch.add_column(sa.Column("launched_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("terminated_at", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        for column in ("terminated_at", "launched_at", "flavor", "instance_type_id",
                       "image_ref", "user_id"):
            batch.drop_column(column)
    op.drop_table("instance_faults")
    op.drop_table("instance_actions_events")
    op.drop_table("instance_actions")
    op.drop_table("flavors")
