"""Alembic environment: the service's SQLModel tables, on the connection `service.database` hands over."""

from alembic import context
from sqlmodel import SQLModel

import service.registry
import service.tables  # noqa: F401

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
