"""The replica launcher (agentflow_grpc.testing.replicas): `agentflow serve` processes on free
ports, killed, restarted and stopped by it. What replicas do together is tests/queue's."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from agentflow_grpc.testing.replicas import Replicas, replica_environment

pytestmark = pytest.mark.timeout(180)


def test_environment_replaces_agentflow_settings_with_the_given_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTFLOW_WORKERS", "99")
    monkeypatch.setenv("AGENTFLOW_REDIS_PREFIX", "mine")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    first = replica_environment("postgresql://here/db", "redis://here/0", workers=4)
    second = replica_environment("postgresql://here/db", "redis://here/0", secret_keys="k:a2V5")

    assert first["DATABASE_URL"] == "postgresql://here/db"
    assert first["REDIS_URL"] == "redis://here/0"
    assert first["AGENTFLOW_WORKERS"] == "4"
    assert "AGENTFLOW_REDIS_PREFIX" not in first
    assert first["AGENTFLOW_GRPC_PORT"] == "0"
    assert first["AGENTFLOW_SECRET_KEYS"].startswith("replicas:")
    assert second["AGENTFLOW_SECRET_KEYS"] == "k:a2V5"
    with pytest.raises(ValueError, match="no_such_setting"):
        replica_environment("postgresql://here/db", "redis://here/0", no_such_setting=1)
    with pytest.raises(ValueError, match="database_url"):
        replica_environment("postgresql://here/db", "redis://here/0", database_url="x")


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_replicas_start_on_free_ports_and_are_killed_restarted_and_stopped(
    migrated_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    environment = replica_environment(
        migrated_dsn, redis_url, redis_prefix="launcher", workers=0, shutdown_grace=1
    )
    with Replicas(environment, tmp_path / "replicas") as replicas:
        first, second = replicas.start(2)
        assert len(set(replicas.addresses)) == 2
        assert all(_listening(address) for address in replicas.addresses)
        assert [r.log.name for r in replicas] == ["replica-0.log", "replica-1.log"]

        first.kill()
        assert not first.alive()
        assert first.process.returncode == -signal.SIGKILL
        assert second.alive()

        again = replicas.restart(first)
        assert (again.number, again.log) == (first.number, first.log)
        assert again.pid != first.pid
        assert again.alive()
        assert _listening(again.address)
        assert list(replicas) == [again, second]

        second.stop()  # SIGTERM: the server drains and exits by itself
        assert second.process.returncode == 0
    assert not any(replica.alive() for replica in replicas)
    assert again.process.returncode == 0
    replicas.stop()  # idempotent
