"""Run an example workflow locally, with no API key: `make run` calls this.

Starts the fake OpenAI-compatible provider (agentflow_grpc.testing) on a free port, points the
example's sources at it, and runs `agentflow run` with live progress. To use a real provider,
write a sources file like `examples/sources/example.json` and run `agentflow run` yourself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from agentflow_grpc.testing import FakeProviderServer

EXAMPLES = Path(__file__).resolve().parent


def main() -> int:
    with FakeProviderServer() as provider, tempfile.TemporaryDirectory() as scratch:
        provider.add_rule(chunk_delay=0.02)  # stream visibly, like a real model
        sources = Path(scratch) / "sources.json"
        config = {"base_url": f"{provider.url}/v1", "model": "fake-model"}
        sources.write_text(
            json.dumps(
                [
                    {"name": name, "type": kind, "config": config, "secrets": {"api_key": "demo"}}
                    for name, kind in (("openai-main", "openai"), ("anthropic-main", "anthropic"))
                ]
            )
        )
        print(f"fake OpenAI-compatible provider on {provider.url}\n", flush=True)
        command = [
            sys.executable,
            "-m",
            "agentflow_grpc",
            "run",
            str(EXAMPLES / "support-triage.json"),
            "--sources",
            str(sources),
            "--input",
            "subject=Refund for order 1001",
            "--input",
            "body=I was charged twice for my subscription this month.",
        ]
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
