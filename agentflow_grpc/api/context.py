"""Who the interceptor found a call to come from, for the servicer handling it (context variables:
each RPC runs in its own task, so each sees its own)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc

from agentflow_grpc.model.errors import UnauthenticatedError
from agentflow_grpc.model.records import Principal

# What a servicer method gets as its second argument.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"  # generic in the stubs only

_principal: ContextVar[Principal | None] = ContextVar("agentflow_principal", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:  # a method the interceptor let through without a key
        raise UnauthenticatedError("this method needs an API key")
    return principal


def bind(principal: Principal | None) -> None:
    _principal.set(principal)
