"""`python -m agentflow_grpc` is the `agentflow` command."""

from agentflow_grpc.cli import main

main()
