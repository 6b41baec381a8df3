"""Chromium for the browser tests (tests/web): where it is, how it is started, and where the
screenshots go."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("AGENTFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no outside network: no background calls to Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot_dir(repo_root: Path) -> Path:
    """`test-output/browser/` (or `$AGENTFLOW_TEST_OUTPUT/browser/`), made if missing."""
    base = Path(os.environ.get("AGENTFLOW_TEST_OUTPUT", repo_root / "test-output"))
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
