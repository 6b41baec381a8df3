"""The llm node: renders its messages, calls a chat model, streams tokens, parses JSON replies.

Output: `{"text": …}` for text replies; for `response_format: "json"` the parsed JSON value
itself (checked against `output_schema` when one is given), so templates read
`nodes.<id>.output.<field>`. With `cache: {ttl}` the same request is answered from the run's
response cache (`nodes.chat`) and the completed event says `cache: "hit"` or `"miss"`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.nodes.chat import cached_chat
from agentflow_grpc.sources.base import ChatRequest
from agentflow_grpc.spec import LlmNode


class LlmHandler:
    async def run(self, node: LlmNode, context: NodeContext) -> NodeResult:
        config = node.config
        messages: list[dict[str, str]] = []
        if config.system is not None:
            messages.append(
                {"role": "system", "content": context.render(config.system, "config.system")}
            )
        if config.prompt is not None:
            messages.append(
                {"role": "user", "content": context.render(config.prompt, "config.prompt")}
            )
        for index, message in enumerate(config.messages or ()):
            content = context.render(message.content, f"config.messages[{index}].content")
            messages.append({"role": message.role, "content": content})
        request = ChatRequest(
            messages=messages,
            model=config.model,
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            response_format=config.response_format,
            output_schema=config.output_schema,
            stream=config.stream,
        )
        reply = await cached_chat(context, node.source, request, config.cache)
        exchange = (*messages, {"role": "assistant", "content": reply.text})
        if config.response_format == "json":
            output = parse_json_reply(reply.text)
            if config.output_schema is not None:
                check_output(output, config.output_schema)
        else:
            output = {"text": reply.text}
        await reply.keep(context)  # only a reply the node accepted
        return NodeResult(output, usage=reply.usage, messages=exchange, cache=reply.cache)


def parse_json_reply(text: str) -> Any:
    """The JSON a model returned; a fenced ```json block is accepted, as models add them.

    The whole reply is tried first, then the first fenced block in it: models put a sentence
    before or after the block, the whole block on one line, or leave the fence unclosed.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        error = exc
    for body in _fenced_bodies(text):
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            continue
    preview = " ".join(text.split())[:80] or "(empty)"
    raise NodeFailure(
        "llm.invalid_json",
        f"the model's reply is not JSON: {error.msg} at {error.pos} (reply starts: {preview!r})",
    ) from None


_FENCE = re.compile(r"```[ \t]*(?:json\b)?", re.I)


def _fenced_bodies(text: str) -> Iterator[str]:
    """What follows the first opening fence, up to each later fence in turn, then to the end."""
    opening = _FENCE.search(text)
    if opening is None:
        return
    rest = text[opening.end() :]
    for closing in re.finditer("```", rest):
        yield rest[: closing.start()]
    yield rest


def check_output(output: Any, schema: dict[str, Any]) -> None:
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(output)
    )
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the reply"
        raise NodeFailure(
            "llm.output_schema_mismatch",
            f"the model's JSON does not fit output_schema at {where}: {error.message}",
        )
