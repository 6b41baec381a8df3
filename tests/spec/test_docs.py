"""docs/spec.md documents every violation and warning code, and nothing that does not exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentflow_grpc.spec import ViolationCode, WarningCode, validate_spec


def test_every_code_is_documented(repo_root: Path) -> None:
    text = (repo_root / "docs" / "spec.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", text, flags=re.MULTILINE))
    assert documented == {code.value for code in (*ViolationCode, *WarningCode)}


def test_readme_example_is_a_valid_spec(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "the README shows one full spec"
    result = validate_spec(json.loads(blocks[0]))
    assert result.ok, result.violations
