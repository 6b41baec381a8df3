"""The compiler: a validated WorkflowSpec in, a runnable LangGraph StateGraph out."""

from agentflow_grpc.compiler.builder import CompiledWorkflow, compile_workflow
from agentflow_grpc.compiler.cache import CompiledWorkflowCache
from agentflow_grpc.compiler.segments import CompileError, Segment, split_segments

__all__ = [
    "CompileError",
    "CompiledWorkflow",
    "CompiledWorkflowCache",
    "Segment",
    "compile_workflow",
    "split_segments",
]
