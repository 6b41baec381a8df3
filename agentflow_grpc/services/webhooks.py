"""Webhooks: an execution's completion webhook deliveries and their attempts, as the API
lists them (any role of the execution's tenant). Sending is the dispatcher's
(services/webhook_dispatcher.py); making them, the event log's (services/webhook_payloads.py).
"""

from __future__ import annotations

import uuid

from agentflow_grpc.model.records import Principal
from agentflow_grpc.model.webhooks import WebhookDelivery
from agentflow_grpc.services.access import check_visible
from agentflow_grpc.storage import executions as execution_store
from agentflow_grpc.storage import webhooks as store
from agentflow_grpc.storage.database import Database


class WebhookService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def deliveries(
        self, principal: Principal, execution_id: uuid.UUID
    ) -> list[WebhookDelivery]:
        """The execution's deliveries, oldest first, with their attempts; NotFoundError for an
        execution the tenant does not have."""
        async with self._database.tenant(principal.tenant_id) as connection:
            check_visible(
                principal,
                await execution_store.get(connection, principal.tenant_id, execution_id),
            )
            return await store.list_for_execution(connection, principal.tenant_id, execution_id)
