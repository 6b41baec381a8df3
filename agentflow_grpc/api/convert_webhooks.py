"""Webhook deliveries -> protobuf messages (ExecutionService's ListWebhookDeliveries)."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import execution_pb2
from agentflow_grpc.api.convert import dict_to_struct, name_of, timestamp
from agentflow_grpc.model.webhooks import DeliveryState, WebhookAttempt, WebhookDelivery

STATE_OF_DELIVERY = {
    DeliveryState.PENDING: execution_pb2.WebhookDelivery.STATE_PENDING,
    DeliveryState.DELIVERED: execution_pb2.WebhookDelivery.STATE_DELIVERED,
    DeliveryState.FAILED: execution_pb2.WebhookDelivery.STATE_FAILED,
}


def delivery_to_proto(delivery: WebhookDelivery) -> execution_pb2.WebhookDelivery:
    return execution_pb2.WebhookDelivery(
        id=str(delivery.id),
        execution=name_of("executions", delivery.execution_id),
        source=name_of("sources", delivery.source_id),
        event_type=delivery.event_type,
        state=STATE_OF_DELIVERY[delivery.state],
        attempt_count=delivery.attempt_count,
        create_time=timestamp(delivery.created_at),
        next_attempt_time=(
            timestamp(delivery.next_attempt_at) if delivery.state is DeliveryState.PENDING else None
        ),
        deliver_time=timestamp(delivery.delivered_at),
        last_error=delivery.last_error,
        payload=dict_to_struct(delivery.payload),
        attempts=[attempt_to_proto(attempt) for attempt in delivery.attempts],
    )


def attempt_to_proto(attempt: WebhookAttempt) -> execution_pb2.WebhookAttempt:
    return execution_pb2.WebhookAttempt(
        attempt=attempt.attempt,
        start_time=timestamp(attempt.started_at),
        duration_ms=attempt.duration_ms,
        status_code=attempt.status_code or 0,
        error=attempt.error,
    )
