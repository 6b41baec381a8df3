"""The W3C trace of each execution: the trace of the call that started it (32 hex digits).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        "ALTER TABLE executions ADD COLUMN trace_id text CHECK (trace_id ~ '^[0-9a-f]{32}$');"
    )


def downgrade() -> None:
    execute_script("ALTER TABLE executions DROP COLUMN trace_id;")
