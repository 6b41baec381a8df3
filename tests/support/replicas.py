"""Server replicas as real processes: `agentflow serve` twice (or more) on one PostgreSQL and one
Valkey (agentflow_grpc.testing.replicas), with Envoy in front of them (round robin). Each can be
killed like a crashed machine.

The test's tenant and API key are made through the storage layer; everything else goes through
the replicas' APIs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agentflow_grpc.gateway.envoy import EnvoyGateway, GatewayConfig, Upstream
from agentflow_grpc.testing.replicas import Replica, Replicas, replica_environment
from support.api_helpers import Client, client_of

__all__ = ["Cluster", "Replica", "cluster"]


@dataclass
class Cluster:
    replicas: Replicas
    gateway: EnvoyGateway
    prefix: str  # the Redis key prefix the replicas share
    key: str  # an admin API key of the test's tenant
    _channels: dict[int, grpc.aio.Channel] = field(default_factory=dict, repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.key),)

    def client(self, replica: Replica) -> Client:
        """Stubs on a channel to `replica` (one channel per process, closed by `close`)."""
        if replica.pid not in self._channels:
            self._channels[replica.pid] = grpc.aio.insecure_channel(replica.address)
        return client_of(self._channels[replica.pid])

    async def close(self) -> None:
        """Close the channels `client` opened."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    def runner_of(self, holder: str) -> Replica:
        """The replica whose lease value (`host:pid:nonce`) is `holder`."""
        pid = int(holder.split(":")[1])
        return next(r for r in self.replicas if r.pid == pid)

    def other_than(self, replica: Replica) -> Replica:
        return next(r for r in self.replicas if r is not replica and r.alive())


@contextmanager
def cluster(
    dsn: str, redis_url: str, key: str, directory: Path, *, size: int = 2, **settings: object
) -> Iterator[Cluster]:
    """`size` replicas behind Envoy; `settings` as for `replica_environment` (`workers=4`)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    environment = replica_environment(
        dsn, redis_url, redis_prefix=prefix, shutdown_grace=1, node_timeout=60, **settings
    )
    gateway: EnvoyGateway | None = None
    with Replicas(environment, directory) as replicas:
        try:
            replicas.start(size)
            gateway = EnvoyGateway(
                GatewayConfig(
                    upstreams=[Upstream.parse(address) for address in replicas.addresses],
                    rest_port=0,
                    admin_port=0,
                    health_check_interval=0.5,
                ),
                directory / "envoy",
                concurrency=1,
            )
            gateway.start()
            yield Cluster(replicas, gateway, prefix, key)
        finally:
            if gateway is not None:
                gateway.stop()
    leftovers = [r.pid for r in replicas if r.alive()]
    assert not leftovers, leftovers
