"""SourceService over gRPC: secrets go in and never come out; TestSource reports, never fails."""

from __future__ import annotations

import re
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from support.api_helpers import (
    Client,
    assert_invalid,
    create_openai_source,
    plain,
    refused_cleanly,
    rpc_error,
    struct,
)
from support.network import closed_port

from agentflow_grpc._gen.agentflow.v1 import source_pb2 as src
from agentflow_grpc.testing import FakeProviderServer

SECRET = "sk-super-secret-4f1c9e"
NEW_SECRET = "sk-rotated-secret-77ab02"


def never_holds_a_secret(message: Message) -> None:
    wire = message.SerializeToString()
    for secret in (SECRET, NEW_SECRET):
        assert secret.encode() not in wire
        assert secret not in str(message)


async def create(
    client: Client, md: Any, *, name: str = "llm", secret: str = SECRET, **fields: Any
) -> src.Source:
    source = src.Source(
        display_name=name,
        type=fields.pop("type", "openai"),
        description=fields.pop("description", "the main LLM"),
        config=struct(fields.pop("config", {"base_url": "http://127.0.0.1:9/v1", "model": "m"})),
        secrets=fields.pop("secrets", {"api_key": secret}),
    )
    created = await client.sources.CreateSource(
        src.CreateSourceRequest(source=source, **fields), metadata=md
    )
    never_holds_a_secret(created)
    return created  # type: ignore[no-any-return]


async def update(client: Client, md: Any, source: src.Source, paths: list[str]) -> src.Source:
    updated = await client.sources.UpdateSource(
        src.UpdateSourceRequest(source=source, update_mask=field_mask_pb2.FieldMask(paths=paths)),
        metadata=md,
    )
    never_holds_a_secret(updated)
    return updated  # type: ignore[no-any-return]


async def list_sources(client: Client, md: Any) -> list[src.Source]:
    response = await client.sources.ListSources(src.ListSourcesRequest(), metadata=md)
    never_holds_a_secret(response)
    return list(response.sources)


async def test_create_returns_secret_names_and_never_their_values(client: Client, md: Any) -> None:
    created = await create(client, md)
    assert re.fullmatch(r"sources/[0-9a-f-]{36}", created.name)
    assert (created.display_name, created.type) == ("llm", "openai")
    assert created.description == "the main LLM"
    assert plain(created.config) == {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    assert list(created.secret_names) == ["api_key"]
    assert dict(created.secrets) == {}
    assert created.etag
    assert created.creator.startswith("api_key:")

    got = await client.sources.GetSource(src.GetSourceRequest(name=created.name), metadata=md)
    never_holds_a_secret(got)
    assert got == created
    assert await list_sources(client, md) == [created]


async def test_update_changes_the_fields_in_the_mask(client: Client, md: Any) -> None:
    created = await create(client, md)
    renamed = await update(
        client,
        md,
        src.Source(
            name=created.name,
            display_name="renamed",
            description="ignored: not in the mask",
            etag=created.etag,
        ),
        ["display_name"],
    )
    assert (renamed.display_name, renamed.description) == ("renamed", "the main LLM")
    assert plain(renamed.config) == plain(created.config)
    assert renamed.etag != created.etag

    described = await update(
        client, md, src.Source(name=created.name, description="new words"), ["description"]
    )
    assert (described.display_name, described.description) == ("renamed", "new words")

    configured = await update(
        client,
        md,
        src.Source(name=created.name, config=struct({"base_url": "http://127.0.0.1:9/v2"})),
        ["config"],
    )
    assert plain(configured.config) == {"base_url": "http://127.0.0.1:9/v2"}
    assert list(configured.secret_names) == ["api_key"]

    rotated = await update(
        client,
        md,
        src.Source(name=created.name, secrets={"api_key": NEW_SECRET, "extra": SECRET}),
        ["secrets"],
    )
    assert sorted(rotated.secret_names) == ["api_key", "extra"]
    assert rotated.updater.startswith("api_key:")

    never_holds_a_secret(
        await client.sources.GetSource(src.GetSourceRequest(name=created.name), metadata=md)
    )
    assert [s.display_name for s in await list_sources(client, md)] == ["renamed"]

    # An update that would leave the source without the secret its adapter needs is refused.
    missing = await rpc_error(
        client.sources.UpdateSource(
            src.UpdateSourceRequest(
                source=src.Source(name=created.name, secrets={"extra": "x"}),
                update_mask=field_mask_pb2.FieldMask(paths=["secrets"]),
            ),
            metadata=md,
        )
    )
    assert missing.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_update_refuses_an_empty_or_unknown_mask_and_a_stale_etag(
    client: Client, md: Any
) -> None:
    created = await create(client, md)
    for paths in ([], ["type"], ["display_name", "secret_names"]):
        error = await rpc_error(
            client.sources.UpdateSource(
                src.UpdateSourceRequest(
                    source=src.Source(name=created.name, display_name="x"),
                    update_mask=field_mask_pb2.FieldMask(paths=paths),
                ),
                metadata=md,
            )
        )
        assert_invalid(error, "update_mask")
    await update(client, md, src.Source(name=created.name, description="v2"), ["description"])
    stale = await rpc_error(
        client.sources.UpdateSource(
            src.UpdateSourceRequest(
                source=src.Source(name=created.name, description="v3", etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            ),
            metadata=md,
        )
    )
    assert stale.code() is grpc.StatusCode.ABORTED
    got = await client.sources.GetSource(src.GetSourceRequest(name=created.name), metadata=md)
    assert got.description == "v2"


async def test_delete_hides_the_source(client: Client, md: Any) -> None:
    created = await create(client, md)
    deleted = await client.sources.DeleteSource(
        src.DeleteSourceRequest(name=created.name, etag=created.etag), metadata=md
    )
    never_holds_a_secret(deleted)
    assert deleted.HasField("delete_time")
    missing = await rpc_error(
        client.sources.GetSource(src.GetSourceRequest(name=created.name), metadata=md)
    )
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    assert await list_sources(client, md) == []
    # The name is free again.
    await create(client, md)


async def test_a_duplicate_display_name_is_already_exists(client: Client, md: Any) -> None:
    await create(client, md)
    error = await rpc_error(create(client, md))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert SECRET not in (error.details() or "")
    assert len(await list_sources(client, md)) == 1


async def test_a_repeated_request_id_returns_the_first_source(client: Client, md: Any) -> None:
    first = await create(client, md, request_id="src-1")
    again = await create(client, md, request_id="src-1")
    assert again.name == first.name
    assert len(await list_sources(client, md)) == 1


async def test_an_unknown_type_is_invalid_argument_naming_type(client: Client, md: Any) -> None:
    error = await rpc_error(create(client, md, type="carrier-pigeon"))
    assert_invalid(error, "type")
    assert await list_sources(client, md) == []


@pytest.mark.parametrize(
    ("config", "secrets"),
    [
        ({"timeout": "soon"}, {"api_key": SECRET}),
        ({"no_such_setting": 1}, {"api_key": SECRET}),
        ({}, {}),  # no api_key
    ],
)
async def test_a_bad_config_is_invalid_argument(
    client: Client, md: Any, config: dict[str, Any], secrets: dict[str, str]
) -> None:
    error = await rpc_error(create(client, md, config=config, secrets=secrets))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert SECRET not in (error.details() or "")
    assert await list_sources(client, md) == []


async def test_malformed_and_unknown_names(client: Client, md: Any) -> None:
    for name in ("", "sources/nope", f"workflows/{uuid.uuid4()}"):
        error = await rpc_error(
            client.sources.GetSource(src.GetSourceRequest(name=name), metadata=md)
        )
        assert_invalid(error, "name")
    missing = f"sources/{uuid.uuid4()}"
    for call in (
        client.sources.GetSource(src.GetSourceRequest(name=missing), metadata=md),
        client.sources.DeleteSource(src.DeleteSourceRequest(name=missing), metadata=md),
        client.sources.TestSource(src.TestSourceRequest(name=missing), metadata=md),
    ):
        assert (await rpc_error(call)).code() is grpc.StatusCode.NOT_FOUND


async def test_testing_a_reachable_openai_source_lists_models(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    source = await create_openai_source(client, md, f"{provider.url}/v1")
    result = await client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=md)
    assert result.ok, result.message
    assert "model" in result.message
    assert result.latency_ms > 0
    (request,) = provider.requests
    assert request.path == "/v1/models"
    assert request.headers["authorization"] == "Bearer sk-api-test"


async def test_testing_rotated_secrets_uses_the_new_ones(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    source = await create_openai_source(client, md, f"{provider.url}/v1")
    await update(
        client, md, src.Source(name=source.name, secrets={"api_key": NEW_SECRET}), ["secrets"]
    )
    result = await client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=md)
    assert result.ok, result.message
    assert provider.requests[-1].headers["authorization"] == f"Bearer {NEW_SECRET}"
    never_holds_a_secret(result)


async def test_testing_an_unreachable_source_reports_it_without_failing_the_call(
    client: Client, md: Any
) -> None:
    closed = f"http://127.0.0.1:{closed_port()}/v1"
    source = await create(client, md, config={"base_url": closed})
    result = await client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=md)
    assert not result.ok
    assert result.message
    never_holds_a_secret(result)


async def test_testing_a_postgres_source(client: Client, md: Any, postgres_dsn: str) -> None:
    source = await create(
        client, md, name="warehouse", type="postgres", config={"dsn": postgres_dsn}, secrets={}
    )
    assert list(source.secret_names) == []
    result = await client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=md)
    assert result.ok, result.message
    assert "PostgreSQL" in result.message


@pytest.mark.parametrize("field", ["display_name", "description"])
async def test_a_nul_character_is_invalid_argument(client: Client, md: Any, field: str) -> None:
    # PostgreSQL cannot store U+0000 in text: the client's mistake, not an INTERNAL.
    source = src.Source(
        display_name="db", type="postgres", config=struct({"dsn": "postgresql://x@h/db"})
    )
    setattr(source, field, "a\x00b")
    await refused_cleanly(
        client.sources.CreateSource(src.CreateSourceRequest(source=source), metadata=md)
    )
    created = await create(client, md)
    setattr(source, field, "a\x00b")
    source.name = created.name
    await refused_cleanly(
        client.sources.UpdateSource(
            src.UpdateSourceRequest(
                source=source, update_mask=field_mask_pb2.FieldMask(paths=[field])
            ),
            metadata=md,
        )
    )
    assert await list_sources(client, md) == [created]
