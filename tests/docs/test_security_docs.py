"""docs/security.md prints the roles table as api/access.py has it, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from agentflow_grpc.api.access import RULES, Restricted

BLOCK = re.compile(r"(<!-- roles-table:[^>]*-->\n)(.*?)(<!-- /roles-table -->)", re.S)


def roles_table() -> str:
    rows = [
        "| method | weakest role | a restricted key | audited on failure |",
        "|---|---|---|---|",
    ]
    for method, rule in RULES.items():
        role = "public" if rule.role is None else rule.role.value
        restricted = {
            Restricted.REFUSED: "refused",
            Restricted.ANY: "yes",
            Restricted.WORKFLOW_FIELD: f"its workflows, named in `{rule.field}`",
            Restricted.EXECUTION: "runs of its workflows",
        }[rule.restricted]
        rows.append(
            f"| `{method.lstrip('/')}` | {role} | {restricted} | {'yes' if rule.mutates else ''} |"
        )
    return "\n".join(rows) + "\n"


def test_the_roles_table_in_the_docs_is_the_enforced_one(repo_root: Path) -> None:
    text = (repo_root / "docs" / "security.md").read_text()
    block = BLOCK.search(text)
    assert block is not None, "docs/security.md has no roles-table block"
    assert block.group(2) == roles_table(), (
        "docs/security.md's roles table is stale:\n" + roles_table()
    )
