"""Every failure code the runtime can report is documented in docs/runtime.md."""

from __future__ import annotations

import re
from pathlib import Path

PATTERNS = (
    re.compile(r'NodeFailure\(\s*"([a-z_]+\.[a-z_]+)"'),  # NodeFailure("code", …)
    re.compile(r'^\s*code = "([a-z_]+\.[a-z_]+)"', re.M),  # error classes' codes
    re.compile(r'"code": "([a-z_]+\.[a-z_]+)"'),  # execution errors
    re.compile(r'for_http_status\("([a-z_]+)"'),  # prefixes of the HTTP status codes
)
HTTP_SUFFIXES = ("rate_limited", "unavailable", "unauthenticated", "rejected")
RUNTIME_PACKAGES = ("engine", "compiler", "nodes", "sources", "model")


def runtime_codes(repo_root: Path) -> set[str]:
    codes: set[str] = set()
    # NodeFailure's class default; every NodeFailure is raised with a code of its own.
    exempt = {"node.failed"}
    for package in RUNTIME_PACKAGES:
        for path in (repo_root / "agentflow_grpc" / package).rglob("*.py"):
            text = path.read_text()
            for pattern in PATTERNS[:3]:
                codes.update(pattern.findall(text))
            for prefix in PATTERNS[3].findall(text):
                codes.update(f"{prefix}.{suffix}" for suffix in HTTP_SUFFIXES)
    return codes - exempt


def test_every_runtime_failure_code_is_documented(repo_root: Path) -> None:
    codes = runtime_codes(repo_root)
    assert {"node.deadline_exceeded", "http.blocked_address", "provider.rate_limited"} <= codes
    documented = set(
        re.findall(r"`([a-z_]+\.[a-z_<>]+)`", (repo_root / "docs/runtime.md").read_text())
    )
    assert sorted(codes - documented) == []
