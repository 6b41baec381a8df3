"""The engine tests' nodes (test plugins whose behaviour each test controls) and an engine that
runs them."""

from __future__ import annotations

import pytest
from support.plugins import ControlledNodes

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.observability.metrics import Metrics


@pytest.fixture
def nodes() -> ControlledNodes:
    return ControlledNodes()


@pytest.fixture
def engine(nodes: ControlledNodes) -> ExecutionEngine:
    return ExecutionEngine(
        metrics=Metrics(), registry=nodes.registry, node_timeout=10, execution_timeout=30
    )
