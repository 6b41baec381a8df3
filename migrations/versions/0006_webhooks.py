"""Completion webhooks: the run's webhook source, its deliveries and their attempts.
docs/webhooks.md.

A delivery is made in the transaction that stores its run's terminal event; its id is the
Standard Webhooks `webhook-id` (the same on every retry) and its payload is frozen then. A
dispatcher on any replica leases due deliveries (`lease_token`, `next_attempt_at` moved past
the send's timeout, taken with SKIP LOCKED) and records each attempt; attempts are
append-only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    ALTER TABLE executions ADD COLUMN webhook_source_id uuid;

    CREATE TABLE webhook_deliveries (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        execution_id uuid NOT NULL,
        source_id uuid NOT NULL,
        event_type text NOT NULL CHECK (event_type IN
            ('execution.completed', 'execution.failed', 'execution.cancelled')),
        payload jsonb NOT NULL,
        state text NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        lease_token uuid,
        created_at timestamptz NOT NULL DEFAULT now(),
        delivered_at timestamptz,
        last_error text NOT NULL DEFAULT '',
        UNIQUE (tenant_id, id),
        FOREIGN KEY (tenant_id, execution_id) REFERENCES executions (tenant_id, id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_of_execution
        ON webhook_deliveries (tenant_id, execution_id, created_at);

    CREATE TABLE webhook_delivery_attempts (
        tenant_id uuid NOT NULL,
        delivery_id uuid NOT NULL,
        attempt integer NOT NULL CHECK (attempt > 0),
        started_at timestamptz NOT NULL,
        duration_ms double precision NOT NULL CHECK (duration_ms >= 0),
        status_code integer,
        error text NOT NULL DEFAULT '',
        PRIMARY KEY (delivery_id, attempt),
        FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id)
    );
    CREATE TRIGGER webhook_delivery_attempts_append_only
        BEFORE UPDATE OR DELETE ON webhook_delivery_attempts
        FOR EACH ROW EXECUTE FUNCTION agentflow_forbid_change();

    GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO agentflow_app;
    GRANT SELECT, INSERT ON webhook_delivery_attempts TO agentflow_app;
    """)
    for table in ("webhook_deliveries", "webhook_delivery_attempts"):
        execute_script(f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON {table}
            USING (agentflow_visible(tenant_id)) WITH CHECK (agentflow_visible(tenant_id));
        """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE webhook_delivery_attempts, webhook_deliveries;
    ALTER TABLE executions DROP COLUMN webhook_source_id;
    """)
