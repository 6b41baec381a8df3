"""WebhookDispatcher: sends the completion webhooks that ended runs left (docs/webhooks.md).

Every replica runs one, started and stopped with its workers. It leases due deliveries from
PostgreSQL (storage/webhooks.py: `FOR UPDATE SKIP LOCKED`, a lease longer than any send), so
replicas never send one delivery at the same time and a delivery whose sender died is taken up
again once its lease is over, here or elsewhere, after a restart too. Each delivery is sent
through its `webhook` source (signed, through the guarded client) and each attempt recorded:
a 2xx answer delivers it; any other answer, or none, is retried with exponential backoff and
jitter (tenacity's `wait_exponential_jitter`: `retry_delay`, doubling up to `max_delay`) until
`retry_window` seconds after the run ended, then it is failed. Some failures no retry mends,
and fail it at once: the address is refused (private, and the source does not allow it), or the
source is gone or no longer a valid webhook.

It looks for due deliveries every `poll_interval` seconds, and at once when PostgreSQL notifies
it of a new one (made by a run ending on any replica), or when `wake()` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from tenacity import AsyncRetrying, RetryCallState, wait_exponential_jitter

from agentflow_grpc.model.errors import AgentFlowError
from agentflow_grpc.model.webhooks import DeliveryState, SendResult, WebhookDelivery
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.sources.webhook import TYPE_NAME, WebhookSource, encode
from agentflow_grpc.storage import sources as source_store
from agentflow_grpc.storage import webhooks as store
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.webhooks")

LEASE_SECONDS = 120.0  # longer than any send (a webhook source's timeout is at most 60 s)
LISTEN_RETRY = 5.0  # seconds before listening again after the listening connection failed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed delivery is tried again, and until when."""

    retry_delay: float = 5.0  # seconds before the second attempt
    max_delay: float = 7200.0  # most seconds between two attempts
    retry_window: float = 86_400.0  # seconds after the run ended; later: failed

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th attempt failed."""
        wait = wait_exponential_jitter(
            initial=self.retry_delay, max=self.max_delay, jitter=self.retry_delay / 2
        )
        state = RetryCallState(AsyncRetrying(), None, (), {})
        state.attempt_number = attempts
        return float(wait(state))


class WebhookDispatcher:
    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        registry: SourceRegistry,
        *,
        metrics: Metrics,
        policy: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        concurrency: int = 8,
        dsn: str | None = None,  # to listen for new deliveries; None: polling only
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._database = database
        self._keyring = keyring
        self._registry = registry
        self._metrics = metrics
        self.policy = policy or RetryPolicy()
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        self._dsn = dsn
        self._lease_seconds = lease_seconds
        self._token = uuid.uuid4()  # this dispatcher's leases
        self._due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._tasks or self._concurrency == 0:
            return
        self._tasks.append(asyncio.create_task(self._loop(), name="webhook-dispatcher"))
        if self._dsn is not None:
            self._tasks.append(asyncio.create_task(self._listen(self._dsn), name="webhook-listen"))
        log.info("webhooks.started", concurrency=self._concurrency)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop leasing; sends under way get `grace` seconds, then are cancelled (their leases
        run out and another dispatcher sends them again)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sending:
            _, late = await asyncio.wait(set(self._sending), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def wake(self) -> None:
        """Look for due deliveries now."""
        self._due.set()

    async def dispatch_due(self) -> int:
        """Lease what is due (as many as there are free sending slots) and start sending them;
        how many were started."""
        free = self._concurrency - len(self._sending)
        if free <= 0:
            return 0
        async with self._database.system() as connection:
            due = await store.lease_due(
                connection, token=self._token, limit=free, lease_seconds=self._lease_seconds
            )
        for delivery in due:
            task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return len(due)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._due.set()  # a slot came free: more may be waiting
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("webhooks.delivery_crashed", task=task.get_name(), error=repr(error))

    async def _loop(self) -> None:
        while True:
            self._due.clear()
            try:
                await self.dispatch_due()
            except AgentFlowError as exc:  # the database is down: try again later
                log.warning("webhooks.lease_failed", error=str(exc))
            except Exception:  # never stop sending for one bad look
                log.exception("webhooks.lease_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout=self._poll_interval)

    async def _listen(self, dsn: str) -> None:
        while True:
            try:
                async with store.notifications(dsn, self.wake) as connection:
                    self.wake()  # anything made while nobody listened
                    while not connection.is_closed():
                        await asyncio.sleep(LISTEN_RETRY)
            except Exception as exc:  # polling goes on meanwhile
                log.warning("webhooks.listen_failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(LISTEN_RETRY)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            result = await self._send(delivery)
        except Exception as exc:  # never lose the attempt: record it as failed
            log.exception("webhooks.send_crashed", delivery_id=str(delivery.id))
            result = SendResult(None, f"internal error: {type(exc).__name__}")
        seconds = time.perf_counter() - started
        attempts = delivery.attempt_count + 1
        try:
            async with self._database.tenant(delivery.tenant_id) as connection:
                state = await store.record_attempt(
                    connection,
                    delivery,
                    token=self._token,
                    started_at=started_at,
                    duration_ms=round(seconds * 1000, 3),
                    status_code=result.status_code,
                    error=result.error,
                    delivered=result.delivered,
                    permanent=result.permanent,
                    retry_delay=self.policy.delay(attempts),
                    retry_window=self.policy.retry_window,
                )
        except AgentFlowError as exc:  # its lease runs out and it is sent again
            log.warning("webhooks.record_failed", delivery_id=str(delivery.id), error=str(exc))
            return
        self._metrics.webhook_attempted(_result_label(result), seconds)
        if state is None:
            log.warning("webhooks.lease_lost", delivery_id=str(delivery.id))
        elif state is not DeliveryState.PENDING:
            self._metrics.webhook_ended(state.value)
            log.info(
                "webhooks.ended",
                delivery_id=str(delivery.id),
                execution_id=str(delivery.execution_id),
                state=state.value,
                attempts=attempts,
                error=result.error,
            )

    async def _send(self, delivery: WebhookDelivery) -> SendResult:
        """One attempt: the source read (secrets opened) and opened, the message sent."""
        try:
            async with self._database.tenant(delivery.tenant_id) as connection:
                definition = await source_store.definition(
                    connection, delivery.tenant_id, delivery.source_id, self._keyring
                )
            if definition.type != TYPE_NAME:
                return SendResult(
                    None, f"source {definition.name!r} is no longer a webhook", permanent=True
                )
            source = self._registry.open(definition)
        except AgentFlowError as exc:
            gone = exc.code in ("not_found", "source.invalid_config")
            return SendResult(None, f"{exc.code}: {exc.message}", permanent=gone)
        try:
            assert isinstance(source, WebhookSource)
            return await source.send(str(delivery.id), encode(delivery.payload))
        finally:
            await source.aclose()


def _result_label(result: SendResult) -> str:
    if result.delivered:
        return "delivered"
    if result.status_code is not None:
        return "rejected"
    return "refused" if result.permanent else "unreachable"
