"""The http node: calls an HTTP API with rendered URL, headers, query and JSON body.

Output: with `extract`, `{name: value}` from JSONPath queries on the JSON response (a singular
path gives a value or null, other paths a list); without, `{"status", "headers", "body"}`.
Requests go through `safe_http`: private, loopback and link-local addresses are refused unless the
node's source allows them, the response is read up to `max_response_bytes`, and a source's
credentials are only ever sent to the source's own origin.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx2
import jsonpath

from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.runtime.failures import NodeFailure, for_http_status
from agentflow_grpc.sources.safe_http import (
    BlockedAddressError,
    ResponseTooLargeError,
    create_client,
    read_limited,
)
from agentflow_grpc.spec import HttpNode


class HttpHandler:
    async def run(self, node: HttpNode, context: NodeContext) -> NodeResult:
        config = node.config
        url = context.render(config.url, "config.url")
        headers = {k: context.render(v, f"config.headers.{k}") for k, v in config.headers.items()}
        query = {k: context.render(v, f"config.query.{k}") for k, v in config.query.items()}
        body = context.render_json(config.body, "config.body") if config.body is not None else None
        if node.source is not None:
            api = await context.http_api(node.source)
            _check_origin(url, api.base_url, node.source)
            status, response_headers, content = await _send(
                api.client(), config.method, url, headers, query, body, config.max_response_bytes
            )
        else:
            async with create_client() as client:
                status, response_headers, content = await _send(
                    client, config.method, url, headers, query, body, config.max_response_bytes
                )
        if status >= 400:
            raise for_http_status("http", status, _snippet(content))
        parsed = _parse(content, response_headers.get("content-type", ""))
        if config.extract is None:
            return NodeResult({"status": status, "headers": response_headers, "body": parsed})
        return NodeResult({name: _extract(path, parsed) for name, path in config.extract.items()})


async def _send(
    client: httpx2.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    query: dict[str, str],
    body: Any,
    max_bytes: int,
) -> tuple[int, dict[str, str], bytes]:
    try:
        async with client.stream(
            method, url, headers=headers, params=query or None, json=body
        ) as response:
            content = await read_limited(response, max_bytes)
            return response.status_code, dict(response.headers), content
    except (BlockedAddressError, ResponseTooLargeError) as exc:
        raise NodeFailure(exc.code, exc.message) from exc
    except httpx2.TimeoutException as exc:
        raise NodeFailure("http.timeout", f"{method} {url} timed out", retryable=True) from exc
    except httpx2.TransportError as exc:
        raise NodeFailure(
            "http.unavailable",
            f"{method} {url} failed: {exc or type(exc).__name__}",
            retryable=True,
        ) from exc
    except httpx2.InvalidURL as exc:
        raise NodeFailure("http.invalid_url", f"{url!r} is not a valid URL: {exc}") from exc


def _check_origin(url: str, base_url: str, source: str) -> None:
    target = urlsplit(url)
    if not target.scheme:
        return  # relative: joined to the base URL
    base = urlsplit(base_url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise NodeFailure(
            "http.foreign_origin",
            f"{url} is outside source {source!r} ({base.scheme}://{base.netloc}); its credentials "
            "are only sent there. Use a relative URL, or a node without a source",
        )


def _parse(content: bytes, content_type: str) -> Any:
    text = content.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def _extract(path: str, document: Any) -> Any:
    query = jsonpath.compile(path)
    matches = query.findall(document) if isinstance(document, dict | list) else []
    if isinstance(query, jsonpath.JSONPath) and query.singular_query():
        return matches[0] if matches else None
    return matches


def _snippet(content: bytes, limit: int = 300) -> str:
    text = content[:limit].decode("utf-8", errors="replace").strip()
    return text or "(empty body)"
