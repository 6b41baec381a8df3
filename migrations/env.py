"""Alembic environment: runs on the connection `agentflow_grpc.storage.migrations` hands it."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `agentflow migrate`, which supplies the connection")

if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")

context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
