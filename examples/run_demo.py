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
        # The fake speaks OpenAI's API under /v1 and Anthropic's Messages API at its root.
        sources.write_text(
            json.dumps(
                [
                    {
                        "name": name,
                        "type": kind,
                        "config": {"base_url": base_url, "model": "fake-model"},
                        "secrets": {"api_key": "demo"},
                    }
                    for name, kind, base_url in (
                        ("openai-main", "openai", f"{provider.url}/v1"),
                        ("anthropic-main", "anthropic", provider.url),
                    )
                ]
            )
        )
        print(f"fake provider (OpenAI and Anthropic APIs) on {provider.url}\n", flush=True)
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
