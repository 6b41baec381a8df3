"""Initial schema: tenants, API keys, workflows and their versions, sources, executions and their
event log, the audit log; the agentflow_app role and row-level security on every table.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from agentflow_grpc.storage.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "api_keys",
    "workflows",
    "workflow_versions",
    "sources",
    "executions",
    "execution_events",
    "audit_log",
)


def upgrade() -> None:
    # The role every runtime connection takes. Roles belong to the cluster, not the database,
    # so another AgentFlow database on the same server may have made it already.
    execute_script("""
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'agentflow_app') THEN
            CREATE ROLE agentflow_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
        END IF;
    END
    $$;
    GRANT agentflow_app TO CURRENT_USER;
    GRANT USAGE ON SCHEMA public TO agentflow_app;
    """)

    # A row is visible to the transaction's tenant, or to a transaction in system scope.
    execute_script("""
    CREATE FUNCTION agentflow_visible(row_tenant uuid) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT row_tenant = nullif(current_setting('agentflow.tenant_id', true), '')::uuid
            OR coalesce(current_setting('agentflow.scope', true), '') = 'system'
    $$;

    CREATE FUNCTION agentflow_forbid_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% rows are never changed or removed', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END
    $$;
    """)

    execute_script("""
    CREATE TABLE tenants (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX tenants_name_key ON tenants (name);

    CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        key_hash bytea NOT NULL CHECK (length(key_hash) = 32),
        prefix text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'editor', 'runner', 'viewer')),
        description text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL,
        revoked_at timestamptz
    );
    CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
    CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at DESC, id DESC);

    CREATE TABLE workflows (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        name text NOT NULL,
        current_version integer NOT NULL,
        revision bigint NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        deleted_at timestamptz,
        created_by text NOT NULL,
        updated_by text NOT NULL,
        UNIQUE (tenant_id, id)
    );
    CREATE INDEX workflows_list ON workflows (tenant_id, created_at DESC, id DESC);
    CREATE INDEX workflows_by_name ON workflows (tenant_id, name);

    CREATE TABLE workflow_versions (
        tenant_id uuid NOT NULL,
        workflow_id uuid NOT NULL,
        version integer NOT NULL CHECK (version > 0),
        spec jsonb NOT NULL,
        spec_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL,
        PRIMARY KEY (workflow_id, version),
        FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, id)
    );
    -- A workflow always points at a version that exists (checked at commit: the two rows are
    -- written in one transaction).
    ALTER TABLE workflows ADD CONSTRAINT workflows_current_version_fkey
        FOREIGN KEY (id, current_version) REFERENCES workflow_versions (workflow_id, version)
        DEFERRABLE INITIALLY DEFERRED;

    CREATE TABLE sources (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        name text NOT NULL,
        type text NOT NULL,
        description text NOT NULL DEFAULT '',
        config jsonb NOT NULL DEFAULT '{}',
        secret_names text[] NOT NULL DEFAULT '{}',
        secret_key_id text,
        secret_blob bytea,
        revision bigint NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        deleted_at timestamptz,
        created_by text NOT NULL,
        updated_by text NOT NULL,
        UNIQUE (tenant_id, id),
        CHECK ((secret_key_id IS NULL) = (secret_blob IS NULL))
    );
    CREATE UNIQUE INDEX sources_live_name ON sources (tenant_id, name) WHERE deleted_at IS NULL;
    CREATE INDEX sources_list ON sources (tenant_id, created_at DESC, id DESC);
    CREATE INDEX sources_secret_key ON sources (secret_key_id) WHERE secret_key_id IS NOT NULL;

    CREATE TABLE executions (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        workflow_id uuid,
        workflow_version integer,
        inline_spec jsonb,
        spec_hash text NOT NULL,
        status text NOT NULL
            CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
        inputs jsonb NOT NULL,
        outputs jsonb,
        error jsonb,
        prompt_tokens bigint NOT NULL DEFAULT 0,
        completion_tokens bigint NOT NULL DEFAULT 0,
        total_tokens bigint NOT NULL DEFAULT 0,
        last_sequence bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz,
        duration_ms double precision,
        created_by text NOT NULL,
        UNIQUE (tenant_id, id),
        FOREIGN KEY (workflow_id, workflow_version)
            REFERENCES workflow_versions (workflow_id, version),
        CHECK ((workflow_id IS NULL) = (workflow_version IS NULL)),
        CHECK ((workflow_id IS NULL) <> (inline_spec IS NULL))
    );
    CREATE INDEX executions_list ON executions (tenant_id, created_at DESC, id DESC);
    CREATE INDEX executions_by_workflow
        ON executions (tenant_id, workflow_id, created_at DESC, id DESC);
    CREATE INDEX executions_by_status ON executions (tenant_id, status, created_at DESC, id DESC);

    -- (execution_id, sequence) is the key, and appends must continue executions.last_sequence:
    -- a duplicated or a skipped event cannot be stored.
    CREATE TABLE execution_events (
        tenant_id uuid NOT NULL,
        execution_id uuid NOT NULL,
        sequence bigint NOT NULL CHECK (sequence > 0),
        type text NOT NULL,
        node_id text,
        attempt integer,
        occurred_at timestamptz NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (execution_id, sequence),
        FOREIGN KEY (tenant_id, execution_id) REFERENCES executions (tenant_id, id)
    );

    CREATE TABLE audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants (id),
        occurred_at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        action text NOT NULL,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        before_hash text,
        after_hash text,
        details jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_log_resource ON audit_log (tenant_id, resource_type, resource_id, id);

    CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE OR DELETE ON workflow_versions
        FOR EACH ROW EXECUTE FUNCTION agentflow_forbid_change();
    CREATE TRIGGER execution_events_append_only BEFORE UPDATE OR DELETE ON execution_events
        FOR EACH ROW EXECUTE FUNCTION agentflow_forbid_change();
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION agentflow_forbid_change();
    """)

    # What the runtime role may do: no DELETE anywhere (deletes are soft), and the append-only
    # tables take INSERT only.
    execute_script("""
    GRANT SELECT, INSERT ON tenants, workflow_versions, execution_events, audit_log
        TO agentflow_app;
    GRANT SELECT, INSERT, UPDATE ON api_keys, workflows, sources, executions TO agentflow_app;
    -- So that the runtime can tell an up-to-date schema from a missing or older one.
    GRANT SELECT ON alembic_version TO agentflow_app;
    """)

    execute_script("""
    ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
    ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON tenants
        USING (agentflow_visible(id)) WITH CHECK (agentflow_visible(id));
    """)
    for table in TENANT_TABLES:
        execute_script(f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_isolation ON {table}
            USING (agentflow_visible(tenant_id)) WITH CHECK (agentflow_visible(tenant_id));
        """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE audit_log, execution_events, executions, sources, workflow_versions, workflows,
        api_keys, tenants;
    DROP FUNCTION agentflow_forbid_change();
    DROP FUNCTION agentflow_visible(uuid);
    REVOKE USAGE ON SCHEMA public FROM agentflow_app;
    REVOKE SELECT ON alembic_version FROM agentflow_app;
    """)
    # The role is the cluster's: drop it only when no other database still uses it.
    execute_script("""
    DO $$
    BEGIN
        DROP ROLE agentflow_app;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        RAISE NOTICE 'role agentflow_app is still used by another database; kept';
    END
    $$;
    """)
