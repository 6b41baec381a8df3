"""``python -m agentflow_grpc.testing``: the fake OpenAI-compatible provider, standalone."""

from agentflow_grpc.testing import main

if __name__ == "__main__":
    main()
