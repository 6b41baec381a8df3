"""API keys with a lifecycle, and tenants with limits of their own (docs/security.md).

api_keys: `expires_at` (NULL: never; a rotated key's grace period ends there), `last_used_at`
(written at most once a minute per key by the servers that see it used), `workflow_ids` (a
restricted key's workflows; NULL: every workflow of its tenant) and `rotated_from` (the key a
rotation replaced). tenants: `limits`, the tenant's own rate limits and quotas, each overriding
the server's default (a JSON object; a limit left out keeps the default). The runtime role may
change that column of a tenant, and nothing else there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    ALTER TABLE api_keys
        ADD COLUMN expires_at timestamptz,
        ADD COLUMN last_used_at timestamptz,
        ADD COLUMN workflow_ids uuid[],
        ADD COLUMN rotated_from uuid REFERENCES api_keys (id);

    ALTER TABLE tenants
        ADD COLUMN limits jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object');
    GRANT UPDATE (limits) ON tenants TO agentflow_app;
    """)


def downgrade() -> None:
    execute_script("""
    REVOKE UPDATE (limits) ON tenants FROM agentflow_app;
    ALTER TABLE tenants DROP COLUMN limits;
    ALTER TABLE api_keys
        DROP COLUMN rotated_from,
        DROP COLUMN workflow_ids,
        DROP COLUMN last_used_at,
        DROP COLUMN expires_at;
    """)
