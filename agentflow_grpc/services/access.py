"""Who may do what: roles in order of power, each allowing what the ones below it allow."""

from __future__ import annotations

from agentflow_grpc.model.errors import PermissionDeniedError
from agentflow_grpc.model.records import Principal, Role

_RANK = {Role.VIEWER: 0, Role.RUNNER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


def require(principal: Principal, role: Role, action: str) -> None:
    """PermissionDeniedError unless `principal` has `role` or a stronger one."""
    if _RANK[principal.role] < _RANK[role]:
        raise PermissionDeniedError(
            f"{action} needs the {role.value} role; this key has {principal.role.value}"
        )
