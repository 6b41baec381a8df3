"""The image node end to end: what reaches the provider, url and b64_json outputs, errors.

Calls go through the real SDKs to the fake provider (OpenAI's, Azure's and Gemini's image APIs),
which answers every request with the same 1x1 PNG (as a URL it serves, or base64).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx2
import pytest
from support.retries import FAST_RETRY
from support.runs import (
    error_of,
    failures,
    for_node,
    of_type,
    output_of,
    run_document,
    single_node_workflow,
    terminal,
)
from support.sources import llm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import validate_spec
from agentflow_grpc.testing import IMAGES_PATH, TINY_PNG, FakeProviderServer


def workflow(
    config: dict[str, Any], *, inputs: dict[str, Any] | None = None, **node: Any
) -> dict[str, Any]:
    """input → one image node `draw` → output `result` (the node's whole output)."""
    return single_node_workflow(
        {"id": "draw", "type": "image", "source": "images", "config": config, **node},
        name="image-node-test",
        inputs=inputs,
    )


@pytest.fixture
def images(provider: FakeProviderServer) -> SourceDefinition:
    return llm_source("images", "openai", provider.url)


async def test_url_output_lists_fetchable_images_with_the_revised_prompt(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    document = workflow(
        {"prompt": "A {{ inputs.colour }} lamp", "n": 2}, inputs={"colour": {"type": "string"}}
    )
    events = await run_document(engine, document, [images], {"colour": "brass"})

    output = output_of(events)
    assert output["model"] == "fake-image"  # the source's image_model
    assert len(output["images"]) == 2
    for image in output["images"]:
        assert set(image) == {"url", "revised_prompt"}
        assert image["revised_prompt"] == "A brass lamp"
        assert image["url"].startswith(provider.url + "/images/")
    assert output["images"][0]["url"] != output["images"][1]["url"]
    async with httpx2.AsyncClient() as client:
        response = await client.get(output["images"][0]["url"])
    assert response.content == TINY_PNG
    assert of_type(events, EventType.NODE_TOKEN) == []


async def test_b64_json_output_holds_the_image_bytes(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    events = await run_document(
        engine, workflow({"prompt": "a lamp", "output": "b64_json"}), [images]
    )

    (image,) = output_of(events)["images"]
    assert set(image) == {"b64_json", "revised_prompt"}
    assert base64.b64decode(image["b64_json"]) == TINY_PNG
    (request,) = provider.requests
    assert request.body["response_format"] == "b64_json"


async def test_prompt_size_n_quality_and_model_reach_the_provider(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    config = {
        "prompt": "{{ inputs.subject }} on a desk",
        "model": "dall-e-3",
        "size": "1792x1024",
        "n": 3,
        "quality": "hd",
    }
    events = await run_document(
        engine,
        workflow(config, inputs={"subject": {"type": "string"}}),
        [images],
        {"subject": "A lamp"},
    )

    output = output_of(events)
    assert output["model"] == "dall-e-3"
    assert len(output["images"]) == 3
    (request,) = provider.requests
    assert request.path == IMAGES_PATH
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body == {
        "prompt": "A lamp on a desk",
        "model": "dall-e-3",
        "size": "1792x1024",
        "n": 3,
        "quality": "hd",
        "response_format": "url",
    }


async def test_defaults_send_one_square_image_without_quality(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    events = await run_document(engine, workflow({"prompt": "a lamp"}), [images])

    assert len(output_of(events)["images"]) == 1
    (request,) = provider.requests
    assert request.body["n"] == 1
    assert request.body["size"] == "1024x1024"
    assert request.body["model"] == "fake-image"
    assert "quality" not in request.body


async def test_image_urls_feed_a_downstream_node(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    document = workflow({"prompt": "a lamp"})
    document["nodes"].append(
        {
            "id": "caption",
            "type": "llm",
            "source": "images",
            "config": {"prompt": "Caption {{ nodes.draw.output.images[0].url }}", "stream": False},
        }
    )
    document["edges"].append({"from": "draw", "to": "caption"})
    document["outputs"]["caption"] = {"from": "nodes.caption.output.text"}
    events = await run_document(engine, document, [images])

    url = output_of(events)["images"][0]["url"]
    assert terminal(events).data["outputs"]["caption"] == f"Echo: Caption {url}"


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (400, "provider.rejected", False),
        (401, "provider.unauthenticated", False),
        (429, "provider.rate_limited", True),
        (500, "provider.unavailable", True),
        (503, "provider.unavailable", True),
    ],
)
async def test_provider_errors_map_to_failure_codes(
    status: int,
    code: str,
    retried: bool,
    engine: ExecutionEngine,
    provider: FakeProviderServer,
    images: SourceDefinition,
) -> None:
    provider.add_rule(path=IMAGES_PATH, status=status, message="no images today")
    events = await run_document(engine, workflow({"prompt": "a lamp"}, retry=FAST_RETRY), [images])

    error = error_of(events)
    assert error["code"] == code
    assert error["node_id"] == "draw"
    assert "no images today" in error["message"]
    expected = [(code, True), (code, True), (code, False)] if retried else [(code, False)]
    assert failures(events, "draw") == expected
    assert len(provider.requests) == len(expected)


async def test_a_server_error_is_retried_until_an_attempt_succeeds(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    provider.add_rule(path=IMAGES_PATH, status=500, times=1)
    events = await run_document(engine, workflow({"prompt": "a lamp"}, retry=FAST_RETRY), [images])

    assert len(output_of(events)["images"]) == 1
    assert failures(events, "draw") == [("provider.unavailable", True)]
    (completed,) = of_type(for_node(events, "draw"), EventType.NODE_COMPLETED)
    assert completed.attempt == 2


async def test_a_slow_provider_exceeds_the_node_deadline(
    engine: ExecutionEngine, provider: FakeProviderServer, images: SourceDefinition
) -> None:
    provider.add_rule(path=IMAGES_PATH, delay=2)
    events = await run_document(engine, workflow({"prompt": "a lamp"}, timeout=0.3), [images])

    assert error_of(events)["code"] == "node.deadline_exceeded"
    assert failures(events, "draw") == [("node.deadline_exceeded", False)]


async def test_without_an_image_model_on_node_or_source_the_node_fails(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = SourceDefinition(
        name="images",
        type="openai",
        config={"base_url": f"{provider.url}/v1", "model": "chat-only"},
        secrets={"api_key": "sk-test"},
    )
    events = await run_document(engine, workflow({"prompt": "a lamp"}), [source])

    error = error_of(events)
    assert error["code"] == "source.no_model"
    assert "image" in error["message"]
    assert provider.requests == []


def test_the_validator_refuses_an_anthropic_source_for_images(provider: FakeProviderServer) -> None:
    sources = SourceSet([llm_source("images", "anthropic", provider.url)])
    result = validate_spec(workflow({"prompt": "a lamp"}), sources=sources.types_by_name())

    assert not result.ok
    assert [violation.code for violation in result.violations] == ["source.incompatible"]


async def test_an_anthropic_source_unchecked_by_the_validator_fails_at_run_time(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = llm_source("images", "anthropic", provider.url)
    events = await run_document(
        engine,
        workflow({"prompt": "a lamp"}, retry=FAST_RETRY),
        [source],
        check_sources=False,
    )

    assert error_of(events)["code"] == "source.incompatible"
    assert failures(events, "draw") == [("source.incompatible", False)]
    assert provider.requests == []


async def test_azure_openai_calls_the_deployment_of_the_image_model(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = SourceDefinition(
        name="images",
        type="azure_openai",
        config={
            "azure_endpoint": provider.url,
            "api_version": "2024-06-01",
            "image_model": "dall-e-3",
        },
        secrets={"api_key": "sk-azure"},
    )
    events = await run_document(engine, workflow({"prompt": "a lamp"}), [source])

    assert terminal(events).type is EventType.EXECUTION_COMPLETED
    (request,) = provider.requests
    assert request.path == "/openai/deployments/dall-e-3/images/generations"
    assert request.body["prompt"] == "a lamp"
