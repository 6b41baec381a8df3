"""The `agentflow` command, run as a real process: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VALID = "support-triage.json"


def agentflow(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "agentflow_grpc", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "AGENTFLOW_LOG_FORMAT": "json", **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_validate_valid_file_reports_counts_and_exits_0(examples_dir: Path) -> None:
    result = agentflow("validate", str(examples_dir / VALID))
    assert result.returncode == 0, result.stderr
    assert f"{VALID}: valid (6 nodes, 5 edges)" in result.stdout
    assert result.stderr == ""


def test_validate_invalid_file_lists_path_code_and_message_and_exits_1(
    tmp_path: Path, examples_dir: Path
) -> None:
    document = json.loads((examples_dir / VALID).read_text())
    document["nodes"][1]["config"]["prompt"] = "Classify {{ inputs.subjct }}"
    spec = tmp_path / "typo.json"
    spec.write_text(json.dumps(document))
    result = agentflow("validate", str(spec))
    assert result.returncode == 1
    assert "typo.json: 1 violation" in result.stdout
    assert "/nodes/1/config/prompt  template.unknown_input" in result.stdout
    assert "did you mean 'subject'?" in result.stdout
    assert "Traceback" not in result.stderr


def test_validate_json_report_is_machine_readable(tmp_path: Path, examples_dir: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"api_version": "agentflow/v1", "name": "x"}))
    result = agentflow("validate", "--json", str(examples_dir / VALID), str(broken))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    first, second = report["files"]
    assert first == {
        "file": str(examples_dir / VALID),
        "valid": True,
        "violations": [],
        "warnings": [],
        "summary": {"nodes": 6, "edges": 5},
    }
    assert second["valid"] is False
    assert {(v["path"], v["code"]) for v in second["violations"]} == {
        ("/outputs", "schema.required"),
        ("/nodes", "schema.required"),
    }


def test_validate_prints_warnings_and_keeps_the_exit_code(tmp_path: Path) -> None:
    def call(node_id: str) -> dict[str, object]:
        return {"id": node_id, "type": "http", "config": {"url": f"https://example.com/{node_id}"}}

    spec = tmp_path / "parallel.json"
    edges = [("start", "a"), ("start", "b"), ("a", "after"), ("b", "after")]
    spec.write_text(
        json.dumps(
            {
                "api_version": "agentflow/v1",
                "name": "parallel",
                "outputs": {"out": {"from": "nodes.after.output"}},
                "nodes": [{"id": "start", "type": "input"}, call("a"), call("b"), call("after")],
                "edges": [{"from": f, "to": t} for f, t in edges],
            }
        )
    )
    result = agentflow("validate", str(spec))
    assert result.returncode == 0, result.stderr
    assert "parallel.json: valid (4 nodes, 4 edges), 1 warning" in result.stdout
    assert "warning /nodes/3  graph.parallel_join" in result.stdout
    assert "aggregator" in result.stdout

    as_json = agentflow("validate", "--json", str(spec))
    assert as_json.returncode == 0
    (report,) = json.loads(as_json.stdout)["files"]
    assert report["valid"] is True
    assert [(w["path"], w["code"]) for w in report["warnings"]] == [
        ("/nodes/3", "graph.parallel_join")
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"api_version": ', "not valid JSON: Expecting value (line 1, column 17)"),
        (b"\xff\xfe not text", "cannot read"),
    ],
)
def test_validate_unreadable_input_exits_2_with_a_clear_message(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    spec = tmp_path / "spec.json"
    if isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        spec.write_text(content)
    result = agentflow("validate", str(spec))
    assert result.returncode == 2
    assert expected in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_validate_missing_file_exits_2_even_beside_invalid_ones(tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.json"
    invalid.write_text("[]")
    result = agentflow("validate", "--json", str(invalid), str(tmp_path / "missing.json"))
    assert result.returncode == 2
    files = json.loads(result.stdout)["files"]
    assert files[0]["violations"][0]["code"] == "schema.wrong_type"
    assert files[1]["error"]["code"] == "unreadable"
    assert "No such file or directory" in files[1]["error"]["message"]


def test_validate_checks_source_references_from_a_sources_file(
    tmp_path: Path, examples_dir: Path
) -> None:
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps([{"name": "warehouse-db", "type": "postgres"}]))
    result = agentflow("validate", "--json", "--sources", str(sources), str(examples_dir / VALID))
    assert result.returncode == 1
    codes = {v["code"] for v in json.loads(result.stdout)["files"][0]["violations"]}
    assert codes == {"source.unknown"}

    sources.write_text(json.dumps({"sources": [{"name": "openai-main", "type": "openai"}]}))
    result = agentflow("validate", "--sources", str(sources), str(examples_dir / VALID))
    assert result.returncode == 0, result.stdout


def test_validate_rejects_a_malformed_sources_file(tmp_path: Path, examples_dir: Path) -> None:
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps([{"name": "x"}]))
    result = agentflow("validate", "--sources", str(sources), str(examples_dir / VALID))
    assert result.returncode == 2
    assert "sources.json: source #0: type: Field required" in result.stderr


def test_a_plugin_that_fails_to_load_is_a_clear_error(tmp_path: Path, examples_dir: Path) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('missing dependency')\n")
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[agentflow.plugins]\nbroken = broken_plugin:PLUGIN\n")
    result = agentflow("validate", str(examples_dir / VALID), env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("error: plugin entry point 'broken'")
    assert "missing dependency" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_without_files_is_a_usage_error() -> None:
    result = agentflow("validate")
    assert result.returncode == 2
    assert "Missing argument 'FILES...'" in result.stderr


def test_schema_prints_the_committed_schema(repo_root: Path) -> None:
    result = agentflow("schema")
    assert result.returncode == 0
    assert result.stdout == (repo_root / "schemas" / "workflow.schema.json").read_text()


def test_schema_writes_to_a_file(tmp_path: Path, repo_root: Path) -> None:
    target = tmp_path / "workflow.schema.json"
    result = agentflow("schema", "--output", str(target))
    assert result.returncode == 0
    assert target.read_text() == (repo_root / "schemas" / "workflow.schema.json").read_text()


def test_schema_to_an_unwritable_place_exits_2(tmp_path: Path) -> None:
    result = agentflow("schema", "--output", str(tmp_path / "missing-dir" / "schema.json"))
    assert result.returncode == 2
    assert "cannot write: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_configuration_exits_2_naming_the_variable(examples_dir: Path) -> None:
    result = agentflow("validate", str(examples_dir / VALID), env={"AGENTFLOW_MAX_NODES": "many"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid configuration: AGENTFLOW_MAX_NODES:")
    assert "Traceback" not in result.stderr


def test_limits_from_the_environment_apply(examples_dir: Path) -> None:
    result = agentflow(
        "validate", "--json", str(examples_dir / VALID), env={"AGENTFLOW_MAX_NODES": "3"}
    )
    assert result.returncode == 1
    violations = json.loads(result.stdout)["files"][0]["violations"]
    assert [(v["path"], v["code"]) for v in violations] == [("/nodes", "limit.too_many_nodes")]


def test_debug_logging_writes_one_json_event_per_file_to_stderr(examples_dir: Path) -> None:
    result = agentflow("validate", str(examples_dir / VALID), env={"AGENTFLOW_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "spec.validated"
    assert event["level"] == "debug"
    assert event["valid"] is True
    assert event["violations"] == 0
    assert event["duration_ms"] > 0
    assert event["timestamp"].endswith("Z")


def test_version_flag() -> None:
    result = agentflow("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("agentflow, version ")
