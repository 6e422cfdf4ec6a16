"""Alembic environment of the agent's schema.

Migrations run only through `agent.db.migrate`, which hands over an open connection (already
inside the transaction and holding the schema lock) in `config.attributes["connection"]`; there is
no alembic.ini and no URL here, so a password never passes through Alembic's configuration.
"""

from alembic import context

from agent.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the agent's migrations run through agent.db.migrate (e.g. 'agent db "
                       "sync'), which provides the database connection")

context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
