"""Every Redis key, pinned: replicas of an older and a newer version may share one Redis, so a
key's form never changes (agentflow_grpc/keyspace.py). A change here is a breaking change."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from agentflow_grpc.keyspace import RedisKeys

TENANT = uuid.UUID("11111111-1111-1111-1111-111111111111")
KEY = uuid.UUID("22222222-2222-2222-2222-222222222222")
EXECUTION = uuid.UUID("33333333-3333-3333-3333-333333333333")
WORKFLOW = uuid.UUID("44444444-4444-4444-4444-444444444444")
SHA = "ab" * 32


def every_key(keys: RedisKeys) -> dict[str, str]:
    return {
        "jobs": keys.jobs,
        "attached_jobs": keys.attached_jobs,
        "cancel_channel": keys.cancel_channel,
        "watch_channel": keys.watch_channel,
        "run_lease": keys.run_lease(EXECUTION),
        "run_cancel": keys.run_cancel(EXECUTION),
        "run_watched": keys.run_watched(EXECUTION),
        "run_events": keys.run_events(EXECUTION),
        "tenant_requests": keys.tenant_requests(TENANT),
        "key_requests": keys.key_requests(TENANT, KEY),
        "tenant_executions": keys.tenant_executions(TENANT),
        "key_executions": keys.key_executions(TENANT, KEY),
        "tenant_tokens": keys.tenant_tokens(TENANT, date(2030, 1, 2)),
        "source_requests": keys.source_requests("src-1"),
        "source_tokens": keys.source_tokens("src-1"),
        "llm_response": keys.llm_response(str(TENANT), SHA),
        "workflow_version": keys.workflow_version(TENANT, WORKFLOW, 7),
        "workflow_current": keys.workflow_current(TENANT, WORKFLOW),
        "invalidation_channel": keys.invalidation_channel,
    }


T, K, E, W = TENANT, KEY, EXECUTION, WORKFLOW


@pytest.mark.parametrize("prefix", ["af", "test-1"])
def test_every_key_keeps_its_exact_form(prefix: str) -> None:
    p = prefix
    assert every_key(RedisKeys(prefix)) == {
        # the queue
        "jobs": f"{p}:jobs",
        "attached_jobs": f"{p}:jobs:attached",
        "cancel_channel": f"{p}:cancel",
        "watch_channel": f"{p}:watch",
        "run_lease": f"{p}:run:{E}:lease",
        "run_cancel": f"{p}:run:{E}:cancel",
        "run_watched": f"{p}:run:{E}:watched",
        "run_events": f"{p}:run:{E}:events",
        # limits (hash tags: a tenant's keys, and a source's, in one cluster slot)
        "tenant_requests": f"{p}:limit:tenant:{{{T}}}:requests",
        "key_requests": f"{p}:limit:tenant:{{{T}}}:key:{K}:requests",
        "tenant_executions": f"{p}:limit:tenant:{{{T}}}:executions",
        "key_executions": f"{p}:limit:tenant:{{{T}}}:key:{K}:executions",
        "tenant_tokens": f"{p}:limit:tenant:{{{T}}}:tokens:2030-01-02",
        "source_requests": f"{p}:limit:source:{{src-1}}:requests",
        "source_tokens": f"{p}:limit:source:{{src-1}}:tokens",
        # caches
        "llm_response": f"{p}:llmcache:{T}:{SHA}",
        "workflow_version": f"{p}:wf:{T}:{W}:v7",
        "workflow_current": f"{p}:wf:{T}:{W}:current",
        # what every replica must forget at once: revoked keys, changed tenant limits
        "invalidation_channel": f"{p}:invalidate",
    }


def test_the_default_prefix_spelled_out() -> None:
    """The same, written out for the default prefix: no formatting shared with the namer."""
    keys = RedisKeys("af")
    assert keys.run_lease(EXECUTION) == "af:run:33333333-3333-3333-3333-333333333333:lease"
    assert keys.key_executions(TENANT, KEY) == (
        "af:limit:tenant:{11111111-1111-1111-1111-111111111111}"
        ":key:22222222-2222-2222-2222-222222222222:executions"
    )
    assert keys.workflow_current(TENANT, WORKFLOW) == (
        "af:wf:11111111-1111-1111-1111-111111111111:44444444-4444-4444-4444-444444444444:current"
    )
    assert keys.llm_response("t", "sha") == "af:llmcache:t:sha"
    assert keys.tenant_tokens("t", date(2030, 1, 2)) == "af:limit:tenant:{t}:tokens:2030-01-02"
