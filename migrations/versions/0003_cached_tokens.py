"""Tokens the LLM response cache saved, per execution (`TokenUsage.cached_tokens`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        "ALTER TABLE executions ADD COLUMN cached_tokens bigint NOT NULL DEFAULT 0"
        " CHECK (cached_tokens >= 0);"
    )


def downgrade() -> None:
    execute_script("ALTER TABLE executions DROP COLUMN cached_tokens;")
