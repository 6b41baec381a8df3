"""What a restricted key (one limited to named workflows) may see of the runs it loads.

Roles are checked once, for every call, by the API's roles table (api/access.py); what it cannot
check from the request alone, a run's workflow, is checked here by the services that load runs.
A run of another workflow is NOT_FOUND, as another tenant's is: nothing about it leaks.
"""

from __future__ import annotations

from agentflow_grpc.model.errors import NotFoundError
from agentflow_grpc.model.records import Execution, Principal


def check_visible(principal: Principal, execution: Execution) -> Execution:
    """`execution`, if `principal` may see it; NotFoundError otherwise."""
    allowed = principal.workflow_ids
    if allowed is not None and execution.workflow_id not in allowed:  # inline specs: None
        raise NotFoundError(f"execution {execution.id} not found")
    return execution
