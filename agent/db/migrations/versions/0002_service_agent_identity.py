"""services.last_seen_by and services.started_at: which agent beats into a service row, and
since when.

Revision ID: 0002
Revises: 0001

Both columns are nullable, so rows written before this revision (and by agents that carry no
identity) keep working: a row without an identity is taken by the next agent that starts.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Microsecond precision on every backend, as in 0001.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("last_seen_by", sa.String(36), nullable=True))
        batch.add_column(sa.Column("started_at", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("started_at")
        batch.drop_column("last_seen_by")
