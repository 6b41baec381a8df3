"""The metrics' names, fixed label values and buckets: the contract dashboards rely on
(docs/observability.md lists each; a test holds the two equal)."""

from __future__ import annotations

RPC_REQUESTS = "agentflow_rpc_requests_total"
RPC_DURATION = "agentflow_rpc_duration_seconds"
EXECUTIONS = "agentflow_executions_total"
EXECUTION_DURATION = "agentflow_execution_duration_seconds"
EXECUTIONS_RUNNING = "agentflow_executions_running"
QUEUE_DEPTH = "agentflow_queue_depth"
QUEUE_WAIT = "agentflow_queue_wait_seconds"
NODE_DURATION = "agentflow_node_duration_seconds"
EVENT_LOG_APPEND = "agentflow_event_log_append_seconds"
EVENT_LOG_EVENTS = "agentflow_event_log_events_total"
DB_POOL_CONNECTIONS = "agentflow_db_pool_connections"
DB_POOL_MAX = "agentflow_db_pool_max_connections"
LIMIT_REFUSALS = "agentflow_rate_limit_refusals_total"
CACHE_REQUESTS = "agentflow_cache_requests_total"
GEN_AI_TOKEN_USAGE = "gen_ai_client_token_usage"
GEN_AI_DURATION = "gen_ai_client_operation_duration_seconds"
GEN_AI_FIRST_CHUNK = "gen_ai_client_operation_time_to_first_chunk_seconds"
WEBHOOK_DELIVERIES = "agentflow_webhook_deliveries_total"
WEBHOOK_ATTEMPT_DURATION = "agentflow_webhook_attempt_duration_seconds"

# Label values with a fixed set.
EXECUTION_STATUSES = ("completed", "failed", "cancelled")
NODE_STATUSES = ("completed", "failed", "timed_out", "cancelled")
LIMIT_SCOPES = (
    "tenant_requests",
    "api_key_requests",
    "tenant_executions",
    "api_key_executions",
    "tenant_tokens",
    "source_calls",
    "server_executions",
)
CACHE_RESULTS = ("hit", "miss", "error")
LLM_RESPONSES = "llm_responses"
WORKFLOW_VERSIONS = "workflow_versions"
WORKFLOW_CURRENT = "workflow_current"
SPEC_VALIDATIONS = "spec_validations"
CACHES = (LLM_RESPONSES, WORKFLOW_VERSIONS, WORKFLOW_CURRENT, SPEC_VALIDATIONS)
CHAT = "chat"  # gen_ai_operation_name of a chat completion
WEBHOOK_OUTCOMES = ("delivered", "failed")
WEBHOOK_ATTEMPT_RESULTS = ("delivered", "rejected", "unreachable", "refused")

# Buckets, in seconds unless said. The GenAI ones are the OpenTelemetry semantic conventions'.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
RUN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
NODE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
QUEUE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
GEN_AI_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                  81.92)  # fmt: skip
GEN_AI_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                 67108864)  # fmt: skip
