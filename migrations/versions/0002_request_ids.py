"""Idempotency keys: a create or start with a `request_id` seen before returns the first result.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("workflows", "sources", "executions")


def upgrade() -> None:
    for table in TABLES:
        execute_script(f"""
        ALTER TABLE {table} ADD COLUMN request_id text
            CHECK (request_id IS NULL OR length(request_id) BETWEEN 1 AND 128);
        CREATE UNIQUE INDEX {table}_request_id ON {table} (tenant_id, request_id)
            WHERE request_id IS NOT NULL;
        """)


def downgrade() -> None:
    for table in TABLES:
        execute_script(f"ALTER TABLE {table} DROP COLUMN request_id;")
