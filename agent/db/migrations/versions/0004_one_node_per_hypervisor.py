"""compute_nodes: one live row per hypervisor hostname (unique hypervisor_hostname, deleted).

Revision ID: 0004
Revises: 0003

A soft-deleted row carries deleted = its id, so deleted rows never collide and a hypervisor
whose service was deleted can register again. A database that already holds two live rows for
one hypervisor hostname is not changed: the upgrade stops (CommandError, which 'agent db sync'
reports on one line) and names them, for the operator to delete the wrong one first.
"""

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME = "uniq_compute_nodes0hypervisor_hostname0deleted"


def upgrade() -> None:
    duplicates = op.get_bind().execute(sa.text(
        "SELECT hypervisor_hostname, COUNT(*) FROM compute_nodes WHERE deleted = 0 "
        "GROUP BY hypervisor_hostname HAVING COUNT(*) > 1 ORDER BY hypervisor_hostname")).all()
    if duplicates:
        shown = ", ".join(f"{name!r} ({count} rows)" for name, count in duplicates[:5])
        raise CommandError(
            f"compute_nodes has more than one live row for hypervisor hostname {shown}; one "
            "hypervisor is one node: soft-delete the rows of the host that does not run it "
            "(its service, with 'agent services delete --host H'), then run 'agent db sync' "
            "again")
    with op.batch_alter_table("compute_nodes") as batch:
        batch.create_unique_constraint(NAME, ["hypervisor_hostname", "deleted"])


def downgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_constraint(NAME, type_="unique")
