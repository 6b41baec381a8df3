"""`agentflow run` as a real process against the fake provider: progress, events, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentflow_grpc.testing import FakeProviderServer

TRIAGE = ["subject=Refund", "body=I was charged twice"]

pytestmark = pytest.mark.slow  # every test starts `agentflow` processes: seconds each


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agentflow_grpc", "run", *args]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "AGENTFLOW_LOG_FORMAT": "json", **extra}


def agentflow_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, env=environment(**env), timeout=60
    )


@pytest.fixture
def sources_file(tmp_path: Path, provider: FakeProviderServer) -> Path:
    path = tmp_path / "sources.json"
    path.write_text(
        json.dumps(
            {
                "sources": [
                    {
                        "name": "openai-main",
                        "type": "openai",
                        "config": {"base_url": f"{provider.url}/v1", "model": "fake-model"},
                        "secrets": {"api_key": {"env": "FAKE_OPENAI_KEY"}},
                    }
                ]
            }
        )
    )
    return path


def inputs(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--input", pair)]


def test_json_mode_prints_one_event_per_line_and_exits_0(
    examples_dir: Path, sources_file: Path, provider: FakeProviderServer
) -> None:
    result = agentflow_run(
        str(examples_dir / "support-triage.json"),
        "--sources",
        str(sources_file),
        "--json",
        *inputs(*TRIAGE),
        FAKE_OPENAI_KEY="sk-from-env",
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "execution_started"
    assert events[-1]["type"] == "execution_completed"
    assert events[-1]["data"]["outputs"]["category"] == "billing"
    assert any(event["type"] == "node_token" for event in events)
    assert provider.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_progress_mode_shows_each_node_and_the_outputs(
    examples_dir: Path, sources_file: Path
) -> None:
    result = agentflow_run(
        str(examples_dir / "support-triage.json"),
        "--sources",
        str(sources_file),
        *inputs(*TRIAGE),
        FAKE_OPENAI_KEY="k",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "classify: running · attempt 1" in lines
    assert any(
        line.startswith("classify: done · attempt 1 · ") and "tokens" in line for line in lines
    )
    assert not any(line.startswith("tech_reply:") for line in lines)  # a route not taken
    final = json.loads(result.stdout[result.stdout.index("{") :])
    assert final["status"] == "completed"
    assert final["outputs"]["category"] == "billing"


def test_invalid_inputs_are_listed_and_exit_1(examples_dir: Path, sources_file: Path) -> None:
    result = agentflow_run(
        str(examples_dir / "support-triage.json"),
        "--sources",
        str(sources_file),
        *inputs("subject=Hi", "customer_tier=gold"),
        FAKE_OPENAI_KEY="k",
    )
    assert result.returncode == 1
    assert "/inputs/body  input.missing" in result.stderr
    assert "/inputs/customer_tier  input.invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_typed_inputs_are_parsed_as_json(tmp_path: Path, sources_file: Path) -> None:
    spec = tmp_path / "typed.json"
    spec.write_text(
        json.dumps(
            {
                "api_version": "agentflow/v1",
                "name": "typed",
                "inputs": {"n": {"type": "integer"}, "tags": {"type": "array"}},
                "outputs": {"total": {"from": "inputs.n + (inputs.tags | length)"}},
                "nodes": [{"id": "start", "type": "input"}],
            }
        )
    )
    ok = agentflow_run(str(spec), "--json", *inputs("n=40", 'tags=["a", "b"]'))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["data"]["outputs"] == {"total": 42}
    bad = agentflow_run(str(spec), *inputs("n=forty", "tags=[]"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --input n: 'forty' is not JSON, and the input is a integer"


def test_an_unset_secret_variable_is_a_clear_usage_error(
    examples_dir: Path, sources_file: Path
) -> None:
    env = environment()
    env.pop("FAKE_OPENAI_KEY", None)
    result = subprocess.run(
        command(str(examples_dir / "support-triage.json"), "--sources", str(sources_file)),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "reads $FAKE_OPENAI_KEY, which is not set" in result.stderr


def test_an_invalid_spec_exits_1_with_its_violations(tmp_path: Path) -> None:
    spec = tmp_path / "broken.json"
    spec.write_text(json.dumps({"api_version": "agentflow/v1", "name": "x", "nodes": []}))
    result = agentflow_run(str(spec))
    assert result.returncode == 1
    assert "schema.required" in result.stderr


def test_a_failed_run_exits_3_and_says_why(
    examples_dir: Path, sources_file: Path, provider: FakeProviderServer
) -> None:
    provider.add_rule(status=400, message="model not found")
    result = agentflow_run(
        str(examples_dir / "support-triage.json"),
        "--sources",
        str(sources_file),
        "--json",
        *inputs(*TRIAGE),
        FAKE_OPENAI_KEY="k",
    )
    assert result.returncode == 3
    last: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert last["type"] == "execution_failed"
    assert last["data"]["error"]["code"] == "provider.rejected"
    assert "model not found" in last["data"]["error"]["message"]


def test_ctrl_c_cancels_the_run_and_reports_it(
    examples_dir: Path, sources_file: Path, provider: FakeProviderServer
) -> None:
    provider.add_rule(delay=30)
    with subprocess.Popen(
        command(
            str(examples_dir / "support-triage.json"),
            "--sources",
            str(sources_file),
            "--json",
            *inputs(*TRIAGE),
        ),
        stdout=subprocess.PIPE,
        text=True,
        env=environment(FAKE_OPENAI_KEY="k"),
    ) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(json.loads(line))
            if lines[-1]["type"] == "node_started" and lines[-1]["node_id"] == "classify":
                process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 3
    assert lines[-1]["type"] == "execution_cancelled"
    assert lines[-1]["data"]["reason"] == "interrupted (SIGINT)"
    assert lines[-1]["data"]["interrupted_nodes"] == ["classify"]


def test_the_make_run_demo_runs_an_example_to_completion(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "examples" / "run_demo.py")],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "billing_reply: done" in result.stdout
    assert '"status": "completed"' in result.stdout
