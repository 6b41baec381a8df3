"""WorkflowSpec: the JSON format of an AgentFlow workflow, its models, schema and validator.

This package is pure: it imports no transport, storage or engine code (an import-linter contract
in the tests keeps it so).
"""

from agentflow_grpc.spec.checks.context import Limits
from agentflow_grpc.spec.codes import Violation, ViolationCode, WarningCode
from agentflow_grpc.spec.loading import load_document, parse_spec
from agentflow_grpc.spec.models import (
    API_VERSION,
    Edge,
    InputParam,
    OutputSpec,
    WorkflowSpec,
)
from agentflow_grpc.spec.nodes import (
    NODE_TYPES,
    AggregatorNode,
    AnyNode,
    DatabaseNode,
    HttpNode,
    ImageNode,
    InputNode,
    LlmNode,
    PluginNode,
    RouterNode,
)
from agentflow_grpc.spec.plugins import PluginCatalog, PluginDefinition, PluginError, PluginType
from agentflow_grpc.spec.schema import workflow_json_schema
from agentflow_grpc.spec.templates import sandbox_environment
from agentflow_grpc.spec.validator import ValidationResult, validate_spec

__all__ = [
    "API_VERSION",
    "NODE_TYPES",
    "AggregatorNode",
    "AnyNode",
    "DatabaseNode",
    "Edge",
    "HttpNode",
    "ImageNode",
    "InputNode",
    "InputParam",
    "Limits",
    "LlmNode",
    "OutputSpec",
    "PluginCatalog",
    "PluginDefinition",
    "PluginError",
    "PluginNode",
    "PluginType",
    "RouterNode",
    "ValidationResult",
    "Violation",
    "ViolationCode",
    "WarningCode",
    "WorkflowSpec",
    "load_document",
    "parse_spec",
    "sandbox_environment",
    "validate_spec",
    "workflow_json_schema",
]
