"""Test doubles for tests, benchmarks and local demos; production code never imports them.

The fake OpenAI-compatible provider, a test double for OpenAI-style HTTP APIs: tests,
benchmarks and local demos point an OpenAI client (the real ``openai`` SDK included) at it
instead of a paid, slow and non-deterministic provider.

Endpoints (``/v1/*`` require an ``Authorization: Bearer ...`` header, any key):

- ``POST /v1/chat/completions``: a whole completion, or ``stream: true`` as server-sent events
  ending in ``data: [DONE]`` (with a usage chunk when ``stream_options.include_usage``).
- ``POST /v1/images/generations``: ``n`` images as ``url`` (served by ``GET /images/{id}.png``)
  or ``b64_json``; every image is the same 1x1 PNG.
- ``GET /v1/models``.
- Anthropic's Messages API, for the ``anthropic`` SDK pointed at the root URL: ``POST
  /v1/messages`` (a ``message``, or its server-sent events ``message_start`` …
  ``message_stop``) and ``GET /v1/models`` in Anthropic's list shape when asked with an
  ``anthropic-version`` header; the key as ``Authorization: Bearer`` or ``x-api-key``; errors,
  stop reasons and usage in Anthropic's words (``_anthropic.py``).
- The Gemini API (Google AI, ``v1beta``), for the ``google-genai`` SDK pointed at the root URL:
  ``POST /v1beta/models/{model}:generateContent`` (a ``GenerateContentResponse``; an image
  model's ``inlineData`` when ``responseModalities`` holds ``IMAGE``),
  ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (``data:`` events, one
  ``GenerateContentResponse`` each) and ``GET /v1beta/models``; the key in ``x-goog-api-key``
  (else Google's 403); errors (``RetryInfo`` on a 429), finish reasons, a refused prompt
  (``promptFeedback.blockReason``) and usage in Google's words (``_gemini.py``).
- Azure OpenAI's chat and images paths under :data:`AZURE_PREFIX` and its model list
  ``GET /openai/models`` (``?api-version=``, and an ``api-key`` header or
  ``Authorization: Bearer`` with a token the fake identity platform issued).
- Microsoft Entra ID (``FakeProvider.entra``, a :class:`FakeEntra`): ``POST
  /{tenant}/oauth2/v2.0/token`` (client credentials, for applications registered with
  :meth:`FakeEntra.register_app`) and ``GET /{tenant}/v2.0/.well-known/openid-configuration``;
  azure-identity wants it over https: ``FakeProviderServer(provider, ssl_context=…)``.
- Control API, for other processes (e.g. a browser demo): ``POST /_fake/rules`` (body: the
  :class:`Rule` fields), ``POST /_fake/reset``, ``GET /_fake/requests`` and
  ``PUT /_fake/latency`` (body ``{"seconds": ...}``).

Replies are deterministic: ``Echo: <last user message>``; for a ``json_schema`` response format,
a document that satisfies the schema (:func:`schema_instance`); for ``json_object``,
``{"echo": <last user message>}``. Scripted :class:`Rule` objects, matched in order, override
replies, inject errors and add delays. Every request except the control API is recorded.

In-process use::

    with FakeProviderServer() as server:
        server.add_rule(contains="flaky", status=500, times=2)
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

Standalone: ``python -m agentflow_grpc.testing [--host H] [--port P] [--latency S]``.

Server replicas as processes (``agentflow serve`` on one PostgreSQL and one Valkey) are in the
public module :mod:`agentflow_grpc.testing.replicas`.
"""

from __future__ import annotations

from agentflow_grpc.testing._entra import FakeEntra
from agentflow_grpc.testing._provider import AZURE_PREFIX, CHAT_PATH, IMAGES_PATH, FakeProvider
from agentflow_grpc.testing._replies import TINY_PNG, schema_instance
from agentflow_grpc.testing._rules import RecordedRequest, Rule
from agentflow_grpc.testing._server import FakeProviderServer, main

__all__ = [
    "AZURE_PREFIX",
    "CHAT_PATH",
    "IMAGES_PATH",
    "TINY_PNG",
    "FakeEntra",
    "FakeProvider",
    "FakeProviderServer",
    "RecordedRequest",
    "Rule",
    "main",
    "schema_instance",
]
