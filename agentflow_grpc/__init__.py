"""AgentFlow: LLM workflows as a service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentflow-grpc")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
