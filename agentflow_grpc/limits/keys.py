"""Where each limit lives in Redis: every key under `<AGENTFLOW_REDIS_PREFIX>:limit:`.

A tenant's keys share the hash tag `{<tenant id>}` and a source's keys `{<source id>}`, so each
script touches keys of one cluster slot only (a tenant and its API keys are decided together).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

Id = uuid.UUID | str


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "af"

    def _tenant(self, tenant_id: Id) -> str:
        return f"{self.prefix}:limit:tenant:{{{tenant_id}}}"

    def tenant_requests(self, tenant_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:requests"

    def key_requests(self, tenant_id: Id, api_key_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:key:{api_key_id}:requests"

    def tenant_executions(self, tenant_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:executions"

    def key_executions(self, tenant_id: Id, api_key_id: Id) -> str:
        return f"{self._tenant(tenant_id)}:key:{api_key_id}:executions"

    def tenant_tokens(self, tenant_id: Id, day: date) -> str:
        return f"{self._tenant(tenant_id)}:tokens:{day.isoformat()}"

    def source_requests(self, source_key: str) -> str:
        return f"{self.prefix}:limit:source:{{{source_key}}}:requests"

    def source_tokens(self, source_key: str) -> str:
        return f"{self.prefix}:limit:source:{{{source_key}}}:tokens"
