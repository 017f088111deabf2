"""Alembic environment: runs on the connection that ``Database.upgrade`` hands over."""

from alembic import context

from medassist.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("medassist migrations run through medassist.store.Database.upgrade(), which passes a connection.")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
