"""Alembic environment: migrations run on a connection handed over by Continuo."""

from alembic import context

from continuo.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `continuo migrate` or the server's start-up")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
