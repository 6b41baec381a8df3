"""Who may call what: one row per RPC, enforced by the API's interceptor for every call.

Each row names the weakest role that may call the method (roles in order of power: viewer <
runner < editor < admin; each may do what the ones below it may), whether the call changes
anything (then the audit log records it when it is refused or fails; a change that succeeds is
recorded by the change itself, in its own transaction), and what a *restricted* key (one limited
to named workflows) may do with it:

- `REFUSED`: nothing; the method reaches beyond the key's workflows.
- `ANY`: the method touches no workflow's data (who am I, validate a spec).
- `WORKFLOW_FIELD`: the request names the workflow (`workflows/{id}`) in `field`; it must be one
  of the key's. An inline spec is refused: the key runs stored workflows only.
- `EXECUTION`: the request names an execution; the service that loads it answers NOT_FOUND when
  its workflow is not one of the key's (as for another tenant's run, so nothing leaks).

Most changes are recorded in the audit log by the change itself, in its transaction; a row marked
`audited_by_call` (runs started and cancelled, whose records are the executions table and its
event log) is recorded by the API once the call has succeeded.

A method without a row is refused for everyone (and tests/api/test_access_table.py fails: it walks
every RPC of every service against every role). docs/security.md prints this table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from agentflow_grpc.model.errors import PermissionDeniedError
from agentflow_grpc.model.records import Principal, Role

RANK = {Role.VIEWER: 0, Role.RUNNER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


class Restricted(Enum):
    REFUSED = "refused"
    ANY = "any"
    WORKFLOW_FIELD = "the workflow it names"
    EXECUTION = "runs of its workflows"


@dataclass(frozen=True, slots=True)
class Rule:
    role: Role | None  # None: public, no credential needed (health, sign-in config, reflection)
    mutates: bool = False
    restricted: Restricted = Restricted.REFUSED
    field: str = ""  # for WORKFLOW_FIELD: the request field holding `workflows/{id}`
    audited_by_call: bool = False  # its success is recorded by the API, not by the change


PUBLIC = Rule(None, restricted=Restricted.ANY)


def _viewer(restricted: Restricted = Restricted.REFUSED, field: str = "") -> Rule:
    return Rule(Role.VIEWER, restricted=restricted, field=field)


def _change(role: Role, restricted: Restricted = Restricted.REFUSED, field: str = "") -> Rule:
    return Rule(role, mutates=True, restricted=restricted, field=field)


def _run_change(restricted: Restricted, field: str = "") -> Rule:
    """Starting or cancelling a run: runners; recorded by the call."""
    return Rule(Role.RUNNER, mutates=True, restricted=restricted, field=field, audited_by_call=True)


_V1 = "/agentflow.v1."

RULES: dict[str, Rule] = {
    # Workflows
    f"{_V1}WorkflowService/CreateWorkflow": _change(Role.EDITOR),
    f"{_V1}WorkflowService/GetWorkflow": _viewer(Restricted.WORKFLOW_FIELD, "name"),
    f"{_V1}WorkflowService/ListWorkflows": _viewer(),
    f"{_V1}WorkflowService/UpdateWorkflow": _change(Role.EDITOR),
    f"{_V1}WorkflowService/DeleteWorkflow": _change(Role.EDITOR),
    f"{_V1}WorkflowService/ListWorkflowVersions": _viewer(Restricted.WORKFLOW_FIELD, "parent"),
    f"{_V1}WorkflowService/ValidateWorkflow": _viewer(Restricted.ANY),
    # Sources
    f"{_V1}SourceService/CreateSource": _change(Role.EDITOR),
    f"{_V1}SourceService/GetSource": _viewer(),
    f"{_V1}SourceService/ListSources": _viewer(),
    f"{_V1}SourceService/UpdateSource": _change(Role.EDITOR),
    f"{_V1}SourceService/DeleteSource": _change(Role.EDITOR),
    f"{_V1}SourceService/TestSource": Rule(Role.RUNNER),
    # Executions
    f"{_V1}ExecutionService/ExecuteWorkflow": _run_change(Restricted.WORKFLOW_FIELD, "workflow"),
    f"{_V1}ExecutionService/StartExecution": _run_change(Restricted.WORKFLOW_FIELD, "workflow"),
    f"{_V1}ExecutionService/StreamExecution": _viewer(Restricted.EXECUTION),
    f"{_V1}ExecutionService/GetExecution": _viewer(Restricted.EXECUTION),
    f"{_V1}ExecutionService/ListExecutions": _viewer(Restricted.WORKFLOW_FIELD, "workflow"),
    f"{_V1}ExecutionService/CancelExecution": _run_change(Restricted.EXECUTION),
    f"{_V1}ExecutionService/ListWebhookDeliveries": _viewer(Restricted.EXECUTION),
    # Observability
    f"{_V1}ObservabilityService/ListErrorGroups": _viewer(),
    f"{_V1}ObservabilityService/GetErrorGroup": _viewer(),
    f"{_V1}ObservabilityService/GetStats": _viewer(),
    f"{_V1}ObservabilityService/ProfileServer": Rule(Role.ADMIN),
    # The tenant's administration
    f"{_V1}AdminService/CreateApiKey": _change(Role.ADMIN),
    f"{_V1}AdminService/ListApiKeys": Rule(Role.ADMIN),
    f"{_V1}AdminService/RevokeApiKey": _change(Role.ADMIN),
    f"{_V1}AdminService/RotateApiKey": _change(Role.ADMIN),
    f"{_V1}AdminService/GetTenant": Rule(Role.ADMIN),
    f"{_V1}AdminService/UpdateTenant": _change(Role.ADMIN),
    f"{_V1}AdminService/ListAuditEvents": Rule(Role.ADMIN),
    # Identity
    f"{_V1}IdentityService/GetSignInConfig": PUBLIC,
    f"{_V1}IdentityService/GetCaller": _viewer(Restricted.ANY),
    # Health: our own, the standard one, and reflection
    f"{_V1}HealthService/GetHealth": PUBLIC,
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.health.v1.Health/List": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": PUBLIC,
}

_NO_RULE = Rule(Role.ADMIN)  # never reached for a served method: the table test sees to it


def rule_for(method: str) -> Rule:
    return RULES.get(method, _NO_RULE)


def is_public(method: str) -> bool:
    return rule_for(method).role is None


def check(method: str, principal: Principal, request: Any) -> None:
    """PermissionDeniedError unless `principal` may call `method` with `request` (a parsed
    protobuf message) by the table above."""
    rule = RULES.get(method)
    name = method.rsplit("/", 1)[-1]
    if rule is None:
        raise PermissionDeniedError(f"{name} has no access rule; nobody may call it")
    if rule.role is not None and RANK[principal.role] < RANK[rule.role]:
        raise PermissionDeniedError(
            f"{name} needs the {rule.role.value} role; this caller has {principal.role.value}"
        )
    if principal.workflow_ids is None:
        return
    if rule.restricted is Restricted.REFUSED:
        raise PermissionDeniedError(
            f"{name} is not open to a key restricted to workflows; this key may use "
            f"{_named(principal.workflow_ids)}"
        )
    if rule.restricted is Restricted.WORKFLOW_FIELD:
        _check_workflow_field(name, rule.field, principal.workflow_ids, request)


def _check_workflow_field(
    name: str, field: str, allowed: frozenset[uuid.UUID], request: Any
) -> None:
    value = str(getattr(request, field, "") or "")
    workflow_id = _workflow_id(value)
    if workflow_id is None or workflow_id not in allowed:
        what = f"`{field}` {value!r}" if value else f"no `{field}`"
        raise PermissionDeniedError(
            f"{name} with {what}: this key is restricted to {_named(allowed)}"
        )


def _workflow_id(name: str) -> uuid.UUID | None:
    prefix, _, rest = name.partition("/")
    if prefix != "workflows" or not rest:
        return None
    try:
        return uuid.UUID(rest)
    except ValueError:
        return None


def _named(workflow_ids: frozenset[uuid.UUID]) -> str:
    return ", ".join(sorted(f"workflows/{workflow_id}" for workflow_id in workflow_ids))
