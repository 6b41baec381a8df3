"""Completion webhooks as stored: a delivery (one per ended run that names a webhook) and the
attempts made to send it. docs/webhooks.md."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # to be sent (again) at `next_attempt_at`
    DELIVERED = "delivered"  # a 2xx answer came
    FAILED = "failed"  # given up: the retry window is over, or sending cannot succeed


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    attempt: int  # 1, 2, …
    started_at: datetime
    duration_ms: float
    status_code: int | None  # None: no HTTP answer (refused, unreachable, timed out)
    error: str  # empty for a 2xx


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: uuid.UUID  # the Standard Webhooks `webhook-id`, the same on every retry
    tenant_id: uuid.UUID
    execution_id: uuid.UUID
    source_id: uuid.UUID
    event_type: str  # execution.completed, execution.failed or execution.cancelled
    payload: dict[str, Any]  # the body sent, frozen when the run ended
    state: DeliveryState
    attempt_count: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_error: str
    attempts: list[WebhookAttempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one attempt to send a delivery came to."""

    status_code: int | None
    error: str  # empty when delivered
    permanent: bool = False  # no retry can succeed (blocked address, source gone)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
