"""The http node: calls an HTTP API with rendered URL, headers, query and JSON body.

Output: with `extract`, `{name: value}` from JSONPath queries on the JSON response (a singular
path gives a value or null, other paths a list); without, `{"status", "headers", "body"}`.
Requests go through `safe_http`: private, loopback and link-local addresses are refused unless the
node's source allows them, the response is read up to `max_response_bytes`, and a source's
credentials are only ever sent to the source's own origin.

Each request is a CLIENT span (OpenTelemetry's HTTP conventions), named by its method:
`http.request.method`, `url.full` (without user information, every query value `REDACTED`:
query strings carry tokens), `server.address`/`server.port`, `http.response.status_code`; a
status of 400 or more sets `error.type` to it. Headers and bodies are never recorded.

POST and PATCH requests (not idempotent, RFC 9110) carry an `Idempotency-Key` header (IETF
httpapi draft: a Structured Field string) unless the node sets `idempotency_key: false` or its
own `headers` name one. The key is a UUIDv5 of the execution id, node id and visit: the same on
every retry of the visit and when another replica resumes the run, new on each loop iteration.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx2
import jsonpath

from agentflow_grpc.model.failures import NodeFailure, for_http_status
from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.safe_http import (
    BlockedAddressError,
    ResponseTooLargeError,
    create_client,
    read_limited,
)
from agentflow_grpc.spec import HttpNode

IDEMPOTENCY_HEADER = "Idempotency-Key"
_NON_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
# The namespace of AgentFlow's idempotency keys (a fixed, random UUID: never change it, or
# requests resumed across an upgrade would get new keys).
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d3c2a-5b7e-4e0a-9c61-2f4d8a9b7e13")


class HttpHandler:
    async def run(self, node: HttpNode, context: NodeContext) -> NodeResult:
        config = node.config
        url = context.render(config.url, "config.url").strip()
        headers = {k: context.render(v, f"config.headers.{k}") for k, v in config.headers.items()}
        if config.idempotency_key and config.method in _NON_IDEMPOTENT_METHODS:
            _add_idempotency_key(headers, context.execution_id, node.id, context.visits)
        query = {k: context.render(v, f"config.query.{k}") for k, v in config.query.items()}
        body = context.render_json(config.body, "config.body") if config.body is not None else None
        request = _Request(config.method, url, headers, query, body, config.max_response_bytes)
        if node.source is not None:
            api = await context.http_api(node.source)
            with context.timing_call():
                status, response_headers, content = await _send(
                    api.client(), request, _Origin(node.source, api.base_url)
                )
        else:
            async with create_client() as client:
                with context.timing_call():
                    status, response_headers, content = await _send(client, request, None)
        if status >= 400:
            raise for_http_status("http", status, _snippet(content))
        parsed = _parse(content, response_headers.get("content-type", ""))
        if config.extract is None:
            return NodeResult({"status": status, "headers": response_headers, "body": parsed})
        return NodeResult({name: _extract(path, parsed) for name, path in config.extract.items()})


def idempotency_key(execution_id: str, node_id: str, visit: int) -> str:
    """The key of one visit of a node in one execution: a UUIDv5, deterministic."""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{execution_id}/{node_id}/{visit}"))


def _add_idempotency_key(
    headers: dict[str, str], execution_id: str, node_id: str, visit: int
) -> None:
    """Add the header as a Structured Field string, unless the node's headers name one."""
    if any(name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers):
        return
    headers[IDEMPOTENCY_HEADER] = f'"{idempotency_key(execution_id, node_id, visit)}"'


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    max_bytes: int


@dataclass(frozen=True, slots=True)
class _Origin:
    """The origin a source's credentials belong to; requests must stay inside it."""

    source: str
    base_url: str

    def check(self, written: str, sent: httpx2.URL) -> None:
        """Refuse a URL outside the origin: as written (absolute or `//host`) or as resolved."""
        base = httpx2.URL(self.base_url)
        if sent.origin != base.origin or not _names_origin_or_none(written, base.origin):
            home = f"{base.scheme}://{base.netloc.decode('ascii')}"
            raise NodeFailure(
                "http.foreign_origin",
                f"{written} is outside source {self.source!r} ({home}); its credentials are only "
                "sent there. Use a relative URL, or a node without a source",
            )


def _names_origin_or_none(written: str, origin: httpx2.Origin) -> bool:
    """True if the URL as written names no host (a path), or names exactly `origin`."""
    named = urlsplit(written)
    if not named.netloc:
        return not named.scheme  # `http:/path` or `http:path`: a scheme but no host
    try:
        return httpx2.URL(f"{named.scheme or origin.scheme}://{named.netloc}/").origin == origin
    except httpx2.InvalidURL:
        return False


async def _send(
    client: httpx2.AsyncClient, request: _Request, origin: _Origin | None
) -> tuple[int, dict[str, str], bytes]:
    attributes = {"http.request.method": request.method}
    with spans.span(request.method, kind=spans.SpanKind.CLIENT, attributes=attributes) as span:
        status, headers, content = await _exchange(client, request, origin, span)
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                spans.fail(span, str(status), f"{request.method} answered {status}")
        return status, headers, content


async def _exchange(
    client: httpx2.AsyncClient, request: _Request, origin: _Origin | None, span: spans.Span
) -> tuple[int, dict[str, str], bytes]:
    method, url = request.method, request.url
    shown = url.split("?", 1)[0]  # messages end up in event logs: no query strings (tokens)
    try:
        built = client.build_request(
            method,
            url,
            headers=request.headers,
            params=request.query or None,
            json=request.body,
        )
        if span.is_recording():
            span.set_attributes(_url_attributes(built.url))
        if origin is not None:
            origin.check(url, built.url)
        response = await client.send(built, stream=True)
        try:
            content = await read_limited(response, request.max_bytes)
        finally:
            await response.aclose()
        return response.status_code, dict(response.headers), content
    except (BlockedAddressError, ResponseTooLargeError) as exc:
        raise NodeFailure(exc.code, exc.message) from exc
    except httpx2.TimeoutException as exc:
        raise NodeFailure("http.timeout", f"{method} {shown} timed out", retryable=True) from exc
    except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
        raise NodeFailure("http.invalid_url", f"{shown!r} is not a valid URL: {exc}") from exc
    except httpx2.LocalProtocolError as exc:  # e.g. a header value with a line break
        raise NodeFailure(
            "http.invalid_request", f"{method} {shown} cannot be sent: {exc}"
        ) from exc
    except httpx2.TransportError as exc:
        raise NodeFailure(
            "http.unavailable",
            f"{method} {shown} failed: {exc or type(exc).__name__}",
            retryable=True,
        ) from exc
    except httpx2.TooManyRedirects as exc:
        raise NodeFailure("http.too_many_redirects", f"{method} {shown}: {exc}") from exc
    except httpx2.HTTPError as exc:  # e.g. a body that does not decode as its Content-Encoding
        raise NodeFailure(
            "http.invalid_response", f"{method} {shown}: {exc or type(exc).__name__}"
        ) from exc


def _url_attributes(url: httpx2.URL) -> dict[str, spans.AttributeValue]:
    """`url.full` without user information and with every query value `REDACTED`; the server."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    query = urlencode(
        [(name, "REDACTED") for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    )
    attributes: dict[str, spans.AttributeValue] = {
        "url.full": urlunsplit((parts.scheme, netloc, parts.path, query, "")),
        "server.address": host,
    }
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None:
        attributes["server.port"] = port
    return attributes


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
