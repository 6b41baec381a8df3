"""What the commands that call a running server share: where it listens and the key they send.

- The address: `--address HOST:PORT`; else the gRPC address of the `agentflow dev` running
  with this AGENTFLOW_HOME (its `dev-stack.json`); else AGENTFLOW_GRPC_HOST:AGENTFLOW_GRPC_PORT
  (a wildcard host such as 0.0.0.0 becomes 127.0.0.1).
- The API key: `AGENTFLOW_API_KEY`; else the key `agentflow dev` keeps in
  `AGENTFLOW_HOME/dev-api-key`. Never an option: a key on the command line is seen by every
  user of the machine (`ps`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agentflow_grpc.cli.dev import DEV_KEY_FILE, STACK_FILE
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import ConfigurationError

API_KEY_VARIABLE = "AGENTFLOW_API_KEY"
_WILDCARDS = {"0.0.0.0", "::", "[::]", ""}


def server_address(settings: Settings, given: str | None) -> str:
    """HOST:PORT of the gRPC server to call."""
    if given:
        return given
    stack = _dev_stack(settings.home / STACK_FILE)
    if stack is not None:
        return stack
    host = "127.0.0.1" if settings.grpc_host in _WILDCARDS else settings.grpc_host
    return f"{host}:{settings.grpc_port}"


def api_key(settings: Settings) -> str:
    """The key to send as `x-api-key`; ConfigurationError when there is none."""
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if key:
        return key
    kept = settings.home / DEV_KEY_FILE
    try:
        key = kept.read_text(encoding="utf-8").strip()
    except OSError:
        key = ""
    if key:
        return key
    raise ConfigurationError(
        f"no API key: set {API_KEY_VARIABLE} (an admin's key), or start `agentflow dev`, "
        f"which keeps one in {kept}"
    )


def _dev_stack(path: Path) -> str | None:
    try:
        address = json.loads(path.read_text(encoding="utf-8")).get("grpc")
    except (OSError, ValueError, AttributeError):
        return None
    return address if isinstance(address, str) and address else None
