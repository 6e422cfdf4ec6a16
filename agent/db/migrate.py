"""Schema management. (Interim: creates the tables directly; replaced by Alembic migrations.)"""

from agent.db.engine import Database
from agent.db.models import Base


def upgrade(db: Database) -> None:
    Base.metadata.create_all(db.engine)
