"""The aggregator node: waits for every incoming branch, then merges their outputs.

Strategies: `object` → `{branch_id: output, …}`; `list` → `{"items": [output, …]}` in edge order;
`text` → `{"text": …}`, the branch texts joined by `separator`; `summarize` → `{"text": …}`, an
LLM's merge of the joined texts, instructed by `prompt` (cached like an llm node's reply when
`cache` is given).
"""

from __future__ import annotations

import json
from typing import Any

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.nodes.chat import cached_chat
from agentflow_grpc.sources.base import ChatRequest
from agentflow_grpc.spec import AggregatorNode

DEFAULT_SUMMARY_PROMPT = "Merge the following texts into one coherent text."


class AggregatorHandler:
    async def run(self, node: AggregatorNode, context: NodeContext) -> NodeResult:
        config = node.config
        branches = {b: context.outputs[b] for b in context.predecessors if b in context.outputs}
        if config.strategy == "object":
            return NodeResult(branches)
        if config.strategy == "list":
            return NodeResult({"items": list(branches.values())})
        joined = config.separator.join(text_of(output) for output in branches.values())
        if config.strategy == "text":
            return NodeResult({"text": joined})
        if node.source is None:
            raise NodeFailure("aggregator.missing_source", "`summarize` needs an LLM `source`")
        instruction = (
            context.render(config.prompt, "config.prompt")
            if config.prompt is not None
            else DEFAULT_SUMMARY_PROMPT
        )
        prompt = f"{instruction}{config.separator}{joined}"
        request = ChatRequest(messages=[{"role": "user", "content": prompt}], model=config.model)
        reply = await cached_chat(context, node.source, request, config.cache)
        await reply.keep(context)
        exchange = (
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": reply.text},
        )
        return NodeResult(
            {"text": reply.text}, usage=reply.usage, messages=exchange, cache=reply.cache
        )


def text_of(output: Any) -> str:
    """A branch's text: its `text` field when it has one, else its output as JSON."""
    if isinstance(output, dict) and isinstance(output.get("text"), str):
        return str(output["text"])
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, sort_keys=True)
