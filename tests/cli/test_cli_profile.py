"""`agentflow profile` as a real process against a real server: it writes the profile and says
where, finds the server and key of a running `agentflow dev`, and refuses cleanly (exit 2, one
line, no traceback) without a key, with a key that is not an admin's, or a bad duration.

The server runs in the test's event loop, so the command runs as a subprocess awaited with
asyncio (a blocking call would stop the server from answering).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from support.api_fixtures import RunningApi
from support.cli_process import agentflow, assert_refused

from agentflow_grpc.model.records import Role

pytestmark = pytest.mark.slow  # each test starts `agentflow` processes


async def test_it_writes_an_html_profile_of_the_server_and_says_where_and_how_many_samples(
    api: RunningApi, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "server.html"
    output.parent.mkdir()
    result = await agentflow(
        "profile",
        "--seconds",
        "0.5",
        "--output",
        str(output),
        "--address",
        api.address,
        home=tmp_path / "home",
        cwd=tmp_path,
        api_key=api.keys[Role.ADMIN],
    )

    assert result.returncode == 0, result.stderr
    content = output.read_bytes()
    assert content.lstrip().startswith(b"<!DOCTYPE html>")
    assert b"pyinstrument" in content
    found = re.search(r"^Wrote (.+): (\d+) samples over ([\d.]+) s of pid (\d+) on ", result.stdout)
    assert found, result.stdout
    assert found[1] == str(output)
    assert int(found[2]) > 0
    assert float(found[3]) >= 0.5
    assert int(found[4]) == os.getpid()  # the server in this test's process was sampled


async def test_it_finds_the_server_and_key_of_a_running_dev_stack(
    api: RunningApi, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # What `agentflow dev` leaves while it runs (cli/dev.py).
    (home / "dev-stack.json").write_text(json.dumps({"grpc": api.address}))
    (home / "dev-api-key").write_text(api.keys[Role.ADMIN] + "\n")
    result = await agentflow(
        "profile", "--seconds", "0.3", "--format", "speedscope", home=home, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    (written,) = tmp_path.glob("agentflow-profile-*.speedscope.json")
    document = json.loads(written.read_text())
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert document["shared"]["frames"]
    assert result.stdout.startswith(f"Wrote {written.name}: ")


async def test_it_refuses_without_a_key_with_a_viewers_key_and_with_a_bad_duration(
    api: RunningApi, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    port = int(api.address.rsplit(":", 1)[1])

    no_key = await agentflow("profile", "--seconds", "0.1", home=home, cwd=tmp_path)
    assert_refused(no_key, "no API key: set AGENTFLOW_API_KEY")

    viewer = await agentflow(
        "profile",
        "--seconds",
        "0.1",
        home=home,
        cwd=tmp_path,
        api_key=api.keys[Role.VIEWER],
        grpc_port=port,  # AGENTFLOW_GRPC_HOST:PORT when no dev stack runs
    )
    assert_refused(viewer, "PERMISSION_DENIED: ProfileServer needs the admin role")

    too_long = await agentflow(
        "profile", "--seconds", "120", home=home, cwd=tmp_path, api_key=api.keys[Role.ADMIN]
    )
    assert too_long.returncode == 2
    assert "--seconds" in too_long.stderr
    assert list(tmp_path.glob("agentflow-profile-*")) == []  # nothing written on refusal
