"""Error groups and their occurrences; per run, the time spent storing its events and its tokens
by model (for profiles and the stats dashboard). docs/observability.md.

An error group is one cause of failures in a tenant: its fingerprint hashes the error code, the
node type and the message with ids and numbers normalised. Groups are counted up in place;
occurrences are append-only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

KINDS = "('node_attempt', 'execution', 'internal')"


def upgrade() -> None:
    execute_script(f"""
    CREATE TABLE error_groups (
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{{32}}$'),
        code text NOT NULL,
        node_type text NOT NULL DEFAULT '',
        kind text NOT NULL CHECK (kind IN {KINDS}),
        message_pattern text NOT NULL,
        sample_message text NOT NULL,
        stack text NOT NULL DEFAULT '',
        occurrence_count bigint NOT NULL DEFAULT 0 CHECK (occurrence_count >= 0),
        failed_execution_count bigint NOT NULL DEFAULT 0 CHECK (failed_execution_count >= 0),
        first_seen_at timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, fingerprint)
    );
    CREATE INDEX error_groups_recent ON error_groups (tenant_id, last_seen_at DESC, fingerprint);

    CREATE TABLE error_occurrences (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id uuid NOT NULL,
        fingerprint text NOT NULL,
        kind text NOT NULL CHECK (kind IN {KINDS}),
        execution_id uuid,
        workflow_id uuid,
        node_id text,
        attempt integer,
        method text,
        message text NOT NULL,
        ended_execution boolean NOT NULL DEFAULT false,
        occurred_at timestamptz NOT NULL,
        FOREIGN KEY (tenant_id, fingerprint) REFERENCES error_groups (tenant_id, fingerprint)
    );
    CREATE INDEX error_occurrences_group
        ON error_occurrences (tenant_id, fingerprint, occurred_at DESC, id DESC);
    CREATE INDEX error_occurrences_time ON error_occurrences (tenant_id, occurred_at);
    CREATE TRIGGER error_occurrences_append_only BEFORE UPDATE OR DELETE ON error_occurrences
        FOR EACH ROW EXECUTE FUNCTION agentflow_forbid_change();

    GRANT SELECT, INSERT, UPDATE ON error_groups TO agentflow_app;
    GRANT SELECT, INSERT ON error_occurrences TO agentflow_app;
    """)
    for table in ("error_groups", "error_occurrences"):
        execute_script(f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON {table}
            USING (agentflow_visible(tenant_id)) WITH CHECK (agentflow_visible(tenant_id));
        """)
    # event_log_ms: time spent appending the run's events, set with its terminal event.
    # model_usage: [{provider, model, calls, input_tokens, output_tokens, cached_tokens}], idem.
    execute_script("""
    ALTER TABLE executions
        ADD COLUMN event_log_ms double precision CHECK (event_log_ms >= 0),
        ADD COLUMN model_usage jsonb CHECK (jsonb_typeof(model_usage) = 'array');
    """)


def downgrade() -> None:
    execute_script("""
    ALTER TABLE executions DROP COLUMN model_usage, DROP COLUMN event_log_ms;
    DROP TABLE error_occurrences, error_groups;
    """)
