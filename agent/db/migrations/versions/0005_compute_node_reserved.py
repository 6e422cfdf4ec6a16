"""compute_nodes: the host resources the node keeps for itself (reserved_host_cpus,
reserved_host_memory_mb, reserved_host_disk_mb), as its last audit saw them.

Revision ID: 0005
Revises: 0004

The scheduler claims at scheduling time, as nova does with placement allocations: a node's
usage is its reserved resources (placement's inventory 'reserved') plus the flavors of the
instances the database gives it, counted when the choice is made, not as of the node's last
audit. Nullable: a row stays NULL until its agent audits with this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("reserved_host_cpus", "reserved_host_memory_mb", "reserved_host_disk_mb")


def upgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
