"""What a node handler gets (`NodeContext`) and returns (`NodeResult`).

Handlers are small: render their templates through the context, call a source, shape the output.
Events, timeouts and retries are the runtime's job (`compiler.attempts`), not the handler's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from agentflow_grpc.model.events import (
    CacheStatus,
    NodeEvent,
    ProviderCall,
    TokenUsage,
    node_token,
)
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.response_cache import ScopedResponseCache
from agentflow_grpc.nodes.templating import Renderer, variables
from agentflow_grpc.sources.base import ChatModel, Database, HttpApi, ImageModel


@dataclass(frozen=True, slots=True)
class NodeResult:
    output: Any
    usage: TokenUsage | None = None
    route: str | None = None  # routers: the route taken
    messages: tuple[dict[str, str], ...] = ()  # llm calls: the conversation, for the state
    cache: CacheStatus | None = None  # llm calls with a cache policy: "hit" or "miss"


class SourceProvider(Protocol):
    async def get(self, reference: str) -> object: ...


class NodeContext:
    """One attempt of one node: its view of the run, and the ways to report progress."""

    __slots__ = (
        "_emit",
        "_renderer",
        "_scope",
        "_sources",
        "attempt",
        "calls",
        "execution_id",
        "inputs",
        "node",
        "outputs",
        "predecessors",
        "response_cache",
        "visits",
    )

    def __init__(
        self,
        *,
        node: Any,
        execution_id: str,
        attempt: int,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        predecessors: tuple[str, ...],
        visits: int,
        renderer: Renderer,
        sources: SourceProvider,
        emit: Callable[[NodeEvent], None],
        response_cache: ScopedResponseCache | None = None,
        calls: list[ProviderCall] | None = None,
    ) -> None:
        self.node = node
        self.execution_id = execution_id
        self.attempt = attempt
        self.inputs = inputs
        self.outputs = outputs  # outputs of the nodes that have run so far
        self.predecessors = predecessors  # nodes with an edge into this one, in edge order
        self.visits = (
            visits  # how many times this node has run in this execution, this one included
        )
        # The run's LLM response cache, bound to its namespace; None: nothing is cached.
        self.response_cache = response_cache
        # The provider calls the attempt made, as the node times them (record_call); they go
        # into its node_completed / node_failed event: provider time, time to first token.
        self.calls: list[ProviderCall] = [] if calls is None else calls
        self._renderer = renderer
        self._sources = sources
        self._emit = emit
        self._scope = variables(inputs, outputs)

    def render(self, text: str, where: str) -> str:
        return self._renderer.render(text, self._scope, self._where(where))

    def render_value(self, text: str, where: str) -> Any:
        return self._renderer.render_value(text, self._scope, self._where(where))

    def render_json(self, value: Any, where: str) -> Any:
        return self._renderer.render_json(value, self._scope, self._where(where))

    def evaluate(self, expression: str, where: str) -> Any:
        return self._renderer.evaluate(expression, self._scope, self._where(where))

    def record_call(self, call: ProviderCall) -> None:
        """Note a provider call this attempt made (succeeded or failed)."""
        self.calls.append(call)

    @contextlib.contextmanager
    def timing_call(self) -> Iterator[None]:
        """Note the provider call made inside the block, with its time, however it ends."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.calls.append(ProviderCall((time.perf_counter() - started) * 1000))

    def emit_token(self, text: str) -> None:
        self._emit(node_token(self.node.id, self.attempt, text))

    async def chat_model(self, reference: str) -> ChatModel:
        return cast(ChatModel, await self._source(reference, ChatModel, "chat completions"))

    async def image_model(self, reference: str) -> ImageModel:
        return cast(ImageModel, await self._source(reference, ImageModel, "image generation"))

    async def database(self, reference: str) -> Database:
        return cast(Database, await self._source(reference, Database, "SQL queries"))

    async def http_api(self, reference: str) -> HttpApi:
        return cast(HttpApi, await self._source(reference, HttpApi, "HTTP requests"))

    async def _source(self, reference: str, capability: type, what: str) -> object:
        source = await self._sources.get(reference)
        if not isinstance(source, capability):
            raise NodeFailure(
                "source.incompatible",
                f"source {reference!r} does not do {what}, which a {self.node.type} node needs",
            )
        return source

    def _where(self, where: str) -> str:
        return f"node {self.node.id!r} {where}"


class NodeHandler(Protocol):
    async def run(self, node: Any, context: NodeContext) -> NodeResult: ...
