"""The conformance suite every source adapter passes, as LangGraph's checkpointers pass
`checkpoint-conformance`: the same properties, driven against a real local server.

tests/sources/test_conformance.py runs it. An adapter joins with a `Test…` class there that
inherits `SourceConformance` and the suite of each capability its type promises
(`ChatModelConformance`, `ImageModelConformance`, `DatabaseConformance`, `HttpApiConformance`),
names its source types in `TYPES` and gives a `case` fixture: a `Case` aimed at a local server the
tests already run (the fake provider, the embedded PostgreSQL, the CRM API). A registered type with
no class fails `test_every_registered_source_type_has_a_conformance_case`; a class that leaves out
the suite of a capability its type promises fails `test_…_runs_the_suite_of_every_capability…`.

What a type promises is what the validator lets nodes use it for (`SOURCE_TYPES_BY_NODE_TYPE`):
a source an `llm` node may name must be a `ChatModel`, and so on; every source is `Checkable`
(SourceService.test calls `check()`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import pytest

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import (
    ChatModel,
    ChatRequest,
    ChatResult,
    Checkable,
    Database,
    HttpApi,
    ImageModel,
    ImageRequest,
    Source,
)
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.sources.safe_http import BlockedAddressError
from agentflow_grpc.spec.checks.references import SOURCE_TYPES_BY_NODE_TYPE
from agentflow_grpc.testing import FakeProvider

# The capability a node type uses its source through (agentflow_grpc.nodes.base.NodeContext).
CAPABILITY_BY_NODE_TYPE: dict[str, type] = {
    "llm": ChatModel,
    "aggregator": ChatModel,
    "image": ImageModel,
    "database": Database,
    "http": HttpApi,
}


def promised_capabilities(type_name: str) -> set[type]:
    """The protocols sources of `type_name` must implement: Checkable, and the capability of
    every node type the validator lets use them."""
    return {Checkable} | {
        CAPABILITY_BY_NODE_TYPE[node_type]
        for node_type, types in SOURCE_TYPES_BY_NODE_TYPE.items()
        if type_name in types
    }


@dataclass(frozen=True)
class Case:
    """One source type against a live local server."""

    definition: SourceDefinition  # valid, aimed at the live server, with every secret it takes
    unreachable: SourceDefinition  # the same, aimed at a closed port
    unreachable_code: str  # the NodeFailure code `check()` fails with there
    # (config changes, the field the refusal must name as `config.<field>`)
    bad_configs: Sequence[tuple[dict[str, Any], str]]
    connections: Callable[[], Awaitable[int]]  # connections open to the live server now
    required_secrets: Sequence[str] = ()
    # ChatModel: the text the live server replies to a user message.
    reply: Callable[[str], str] | None = None
    # ChatModel, ImageModel: make the live server answer the next call with this HTTP status.
    fail_next_call: Callable[[int], None] | None = None
    # ChatModel: the fake provider serving the source, to script its replies in the source's
    # own wire format (Rule's `finish`, `retry_after`, `context_too_long`, `cache_read_tokens`,
    # `chunk_delay`) and to see streams the client cut.
    fake: FakeProvider | None = None
    # Database: the placeholder of the n-th parameter; a statement writing a row whose `note` is
    # its one parameter; a query counting those rows (as `n`).
    placeholder: Callable[[int], str] | None = None
    insert_note: str | None = None
    count_notes: str | None = None
    # Database: a statement that takes about five seconds (to run past a short timeout); a
    # query returning one row of TYPED_ROW's columns (DatabaseConformance) in the dialect's own
    # types, which must come back as the same JSON whatever the database.
    sleep_query: str | None = None
    typed_row_query: str | None = None

    @property
    def type_name(self) -> str:
        return self.definition.type

    @property
    def secret_values(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.definition.secrets.values()]


def registry() -> SourceRegistry:
    return SourceRegistry.default(metrics=Metrics())


def with_config(definition: SourceDefinition, changes: dict[str, Any]) -> SourceDefinition:
    """`definition` with `changes` merged into its config; a None value removes the key."""
    config = {**definition.config, **changes}
    config = {key: value for key, value in config.items() if value is not None}
    return definition.model_copy(update={"config": config})


def assert_no_secret(case: Case, text: str) -> None:
    for secret in case.secret_values:
        assert secret not in text, f"a secret of {case.type_name!r} shows in: {text}"


async def checked_failure(source: Source) -> NodeFailure:
    assert isinstance(source, Checkable)
    with pytest.raises(NodeFailure) as caught:
        await source.check()
    return caught.value


class SourceConformance:
    """What every source adapter does, whatever it connects to."""

    TYPES: tuple[str, ...] = ()

    async def test_a_valid_definition_opens_and_closes_unused(self, case: Case) -> None:
        source = registry().open(case.definition)  # connects lazily: nothing to reach yet
        try:
            assert source.definition == case.definition
        finally:
            await source.aclose()
        await source.aclose()

    def test_a_bad_config_is_refused_naming_the_field(self, case: Case) -> None:
        assert case.bad_configs, "give at least one bad config"
        for changes, name in case.bad_configs:
            with pytest.raises(SourceConfigError) as caught:
                registry().open(with_config(case.definition, changes))
            refusal = caught.value
            assert refusal.code == "source.invalid_config", changes
            assert f"config.{name}" in refusal.message, (changes, refusal.message)
            assert repr(case.definition.name) in refusal.message, refusal.message
            assert_no_secret(case, refusal.message)

    async def test_a_missing_required_secret_is_refused_naming_it_others_are_optional(
        self, case: Case
    ) -> None:
        assert set(case.required_secrets) <= set(case.definition.secrets)
        for name in case.definition.secrets:
            secrets = {k: v for k, v in case.definition.secrets.items() if k != name}
            without = case.definition.model_copy(update={"secrets": secrets})
            if name in case.required_secrets:
                with pytest.raises(SourceConfigError, match=name) as caught:
                    registry().open(without)
                assert caught.value.code == "source.invalid_config"
            else:
                await registry().open(without).aclose()

    async def test_secrets_never_show_in_repr_or_str(self, case: Case) -> None:
        assert case.secret_values, "give the definition every secret its type takes"
        source = registry().open(case.definition)
        try:
            for shown in (case.definition, source):
                assert_no_secret(case, repr(shown))
                assert_no_secret(case, str(shown))
            assert_no_secret(case, case.definition.model_dump_json())
        finally:
            await source.aclose()

    async def test_it_implements_every_capability_its_type_promises(self, case: Case) -> None:
        source = registry().open(case.definition)
        try:
            missing = [
                protocol.__name__
                for protocol in promised_capabilities(case.type_name)
                if not isinstance(source, protocol)
            ]
            assert not missing, f"{case.type_name!r} sources do not implement {missing}"
        finally:
            await source.aclose()

    async def test_check_succeeds_against_the_live_server(self, case: Case) -> None:
        source = registry().open(case.definition)
        try:
            assert isinstance(source, Checkable)
            said = await source.check()
            assert isinstance(said, str)
            assert said
            assert_no_secret(case, said)
        finally:
            await source.aclose()

    async def test_check_fails_with_a_clear_code_against_a_closed_port(self, case: Case) -> None:
        source = registry().open(case.unreachable)
        try:
            failure = await checked_failure(source)
        finally:
            await source.aclose()
        assert failure.code == case.unreachable_code, (failure.code, failure.message)
        assert failure.code.endswith(".unavailable")
        assert failure.retryable, "an unreachable server may come back"
        assert_no_secret(case, str(failure))

    async def test_aclose_is_idempotent_and_releases_its_connections(self, case: Case) -> None:
        before = await case.connections()
        source = registry().open(case.definition)
        try:
            assert isinstance(source, Checkable)
            await source.check()  # connects
            assert await case.connections() > before, "check() left no connection to count"
        finally:
            await source.aclose()
        await source.aclose()
        assert await case.connections() <= before


class ChatModelConformance:
    """Sources that `llm` and `aggregator` nodes use."""

    PROMPT = "one two three four five"

    async def chat(self, case: Case, *, stream: bool) -> tuple[ChatResult, list[str]]:
        """The result of asking PROMPT, and the tokens streamed meanwhile."""
        source = registry().open(case.definition)
        tokens: list[str] = []
        try:
            assert isinstance(source, ChatModel)
            message = {"role": "user", "content": self.PROMPT}
            result = await source.chat(ChatRequest([message], stream=stream), tokens.append)
        finally:
            await source.aclose()
        return result, tokens

    async def test_chat_streams_tokens_in_order_and_reports_usage_and_finish_reason(
        self, case: Case
    ) -> None:
        assert case.reply is not None
        result, tokens = await self.chat(case, stream=True)
        assert len(tokens) > 1, tokens
        assert "".join(tokens) == case.reply(self.PROMPT) == result.text
        assert result.finish_reason == "stop"
        assert result.model
        usage = result.usage
        assert usage is not None
        assert usage.prompt_tokens > 0
        assert usage.completion_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    async def test_chat_without_streaming_reports_the_same_and_no_tokens(self, case: Case) -> None:
        assert case.reply is not None
        result, tokens = await self.chat(case, stream=False)
        assert tokens == []
        assert result.text == case.reply(self.PROMPT)
        assert result.finish_reason == "stop"
        assert result.usage is not None

    @pytest.mark.parametrize(
        ("status", "code", "retryable"),
        [
            (429, "provider.rate_limited", True),
            (503, "provider.unavailable", True),
            (401, "provider.unauthenticated", False),
            (400, "provider.rejected", False),
        ],
    )
    async def test_provider_errors_are_node_failures_retried_only_when_that_can_help(
        self, case: Case, status: int, code: str, retryable: bool
    ) -> None:
        assert case.fail_next_call is not None
        case.fail_next_call(status)
        source = registry().open(case.definition)
        try:
            assert isinstance(source, ChatModel)
            with pytest.raises(NodeFailure) as caught:
                await source.chat(
                    ChatRequest(messages=[{"role": "user", "content": "hi"}]), lambda _: None
                )
        finally:
            await source.aclose()
        assert (caught.value.code, caught.value.retryable) == (code, retryable)
        assert_no_secret(case, str(caught.value))

    async def failure(self, case: Case, definition: SourceDefinition | None = None) -> NodeFailure:
        """The NodeFailure a chat call fails with (streamed)."""
        source = registry().open(definition or case.definition)
        try:
            assert isinstance(source, ChatModel)
            with pytest.raises(NodeFailure) as caught:
                await source.chat(ChatRequest([{"role": "user", "content": "hi"}]), lambda _: None)
        finally:
            await source.aclose()
        assert_no_secret(case, str(caught.value))
        return caught.value

    @staticmethod
    def fake(case: Case) -> FakeProvider:
        assert case.fake is not None, "give the case the fake provider serving it"
        return case.fake

    @pytest.mark.parametrize("status", [429, 503])
    async def test_a_retry_after_in_seconds_goes_with_the_failure(
        self, case: Case, status: int
    ) -> None:
        self.fake(case).add_rule(status=status, retry_after="7", times=1)
        failure = await self.failure(case)
        assert failure.retryable
        assert failure.retry_after == 7.0

    async def test_a_retry_after_as_an_http_date_is_the_seconds_until_then(
        self, case: Case
    ) -> None:
        when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        self.fake(case).add_rule(status=429, retry_after=when, times=1)
        failure = await self.failure(case)
        assert failure.code == "provider.rate_limited"
        assert failure.retry_after is not None
        assert 25 <= failure.retry_after <= 30, failure.retry_after

    async def test_a_prompt_longer_than_the_context_has_its_own_code_and_is_not_retried(
        self, case: Case
    ) -> None:
        self.fake(case).add_rule(context_too_long=True, times=1)
        failure = await self.failure(case)
        assert (failure.code, failure.retryable) == ("provider.context_too_long", False)

    async def test_a_slow_provider_times_out_and_may_be_retried(self, case: Case) -> None:
        self.fake(case).add_rule(delay=3, times=1)
        failure = await self.failure(case, with_config(case.definition, {"timeout": 0.3}))
        assert (failure.code, failure.retryable) == ("provider.timeout", True)

    @pytest.mark.parametrize("stream", [True, False])
    async def test_a_reply_cut_by_the_token_limit_finishes_for_length(
        self, case: Case, stream: bool
    ) -> None:
        assert case.reply is not None
        self.fake(case).add_rule(finish="length", times=1)
        result, _ = await self.chat(case, stream=stream)
        assert result.finish_reason == "length"
        assert result.text == case.reply(self.PROMPT)

    @pytest.mark.parametrize("stream", [True, False])
    async def test_a_filtered_reply_with_no_text_is_content_blocked(
        self, case: Case, stream: bool
    ) -> None:
        self.fake(case).add_rule(finish="content_filter", reply="", times=1)
        source = registry().open(case.definition)
        try:
            assert isinstance(source, ChatModel)
            with pytest.raises(NodeFailure) as caught:
                await source.chat(
                    ChatRequest([{"role": "user", "content": "hi"}], stream=stream),
                    lambda _: None,
                )
        finally:
            await source.aclose()
        assert (caught.value.code, caught.value.retryable) == ("provider.content_blocked", False)

    async def test_prompt_cache_reads_are_counted_within_the_prompt_tokens(
        self, case: Case
    ) -> None:
        self.fake(case).add_rule(cache_read_tokens=3, times=1)
        result, _ = await self.chat(case, stream=True)
        usage = result.usage
        assert usage is not None
        assert usage.cache_read_tokens == 3
        assert usage.cache_write_tokens == 0
        assert usage.prompt_tokens >= 3
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    async def test_cancelling_a_streamed_call_closes_its_stream(self, case: Case) -> None:
        fake = self.fake(case)
        fake.add_rule(reply="word " * 200, chunk_delay=0.05, times=1)
        source = registry().open(case.definition)
        first_token = asyncio.Event()
        try:
            assert isinstance(source, ChatModel)
            call = asyncio.create_task(
                source.chat(
                    ChatRequest([{"role": "user", "content": "hi"}]),
                    lambda _: first_token.set(),
                )
            )
            await asyncio.wait_for(first_token.wait(), 10)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            async with asyncio.timeout(10):
                while fake.cut_streams == 0:  # the fake notices at its next chunk
                    await asyncio.sleep(0.02)
        finally:
            await source.aclose()
        assert fake.cut_streams == 1

    async def test_calls_of_one_source_share_its_connections(self, case: Case) -> None:
        before = await case.connections()
        source = registry().open(case.definition)
        try:
            assert isinstance(source, ChatModel)
            for _ in range(3):
                await source.chat(ChatRequest([{"role": "user", "content": "hi"}]), lambda _: None)
            assert await case.connections() - before == 1
        finally:
            await source.aclose()


class ImageModelConformance:
    """Sources that `image` nodes use."""

    @pytest.mark.parametrize("output", ["url", "b64_json"])
    async def test_images_come_back_as_many_and_in_the_form_asked(
        self, case: Case, output: Literal["url", "b64_json"]
    ) -> None:
        source = registry().open(case.definition)
        try:
            assert isinstance(source, ImageModel)
            result = await source.generate_images(
                ImageRequest(
                    prompt="a lamp", model=None, size="256x256", n=2, quality=None, output=output
                )
            )
        finally:
            await source.aclose()
        assert len(result.images) == 2
        assert all(image.get(output) for image in result.images), result.images
        assert result.model

    async def test_a_provider_error_is_a_node_failure(self, case: Case) -> None:
        assert case.fail_next_call is not None
        case.fail_next_call(503)
        source = registry().open(case.definition)
        try:
            assert isinstance(source, ImageModel)
            with pytest.raises(NodeFailure) as caught:
                await source.generate_images(
                    ImageRequest(
                        prompt="a lamp", model=None, size="256x256", n=1, quality=None, output="url"
                    )
                )
        finally:
            await source.aclose()
        assert (caught.value.code, caught.value.retryable) == ("provider.unavailable", True)


class DatabaseConformance:
    """Sources that `database` nodes use."""

    async def fetch(
        self, case: Case, query: str, params: Sequence[Any] = (), **options: Any
    ) -> Any:
        source = registry().open(case.definition)
        try:
            assert isinstance(source, Database)
            options = {"read_only": True, "max_rows": 100, "statement_timeout": 10, **options}
            return await source.fetch(query, params, **options)
        finally:
            await source.aclose()

    def two_rows(self, case: Case) -> str:
        """A query over the rows `a` and `b` (column `v`), portable SQL, filtered by $1."""
        assert case.placeholder is not None
        return (
            "SELECT v FROM (SELECT 'a' AS v UNION ALL SELECT 'b' AS v) AS t "
            f"WHERE v = {case.placeholder(1)}"
        )

    async def test_parameters_are_bound_so_an_injection_attempt_is_only_a_value(
        self, case: Case
    ) -> None:
        assert case.placeholder is not None
        query = self.two_rows(case)
        assert (await self.fetch(case, query, ["a"])).rows == [{"v": "a"}]
        assert (await self.fetch(case, query, ["a' OR '1'='1"])).rows == []
        hostile = "x'); DROP TABLE audit_log; --"
        echoed = await self.fetch(case, f"SELECT {case.placeholder(1)} AS v", [hostile])
        assert echoed.rows == [{"v": hostile}]
        assert case.count_notes is not None
        assert (await self.fetch(case, case.count_notes, ["nothing"])).rows == [{"n": 0}]

    async def test_max_rows_caps_the_rows_and_says_so(self, case: Case) -> None:
        five = " UNION ALL ".join(f"SELECT {n} AS n" for n in range(1, 6))
        capped = await self.fetch(case, f"SELECT n FROM ({five}) AS t ORDER BY n", max_rows=3)
        assert capped.columns == ["n"]
        assert capped.rows == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert capped.truncated
        whole = await self.fetch(case, f"SELECT n FROM ({five}) AS t ORDER BY n", max_rows=5)
        assert [row["n"] for row in whole.rows] == [1, 2, 3, 4, 5]
        assert not whole.truncated

    async def test_read_only_refuses_writes_and_read_write_commits_them(self, case: Case) -> None:
        assert case.insert_note is not None
        assert case.count_notes is not None
        note = f"conformance-{uuid.uuid4()}"
        with pytest.raises(NodeFailure) as caught:
            await self.fetch(case, case.insert_note, [note], read_only=True)
        assert (caught.value.code, caught.value.retryable) == ("database.read_only", False)
        assert (await self.fetch(case, case.count_notes, [note])).rows == [{"n": 0}]
        await self.fetch(case, case.insert_note, [note], read_only=False)
        assert (await self.fetch(case, case.count_notes, [note])).rows == [{"n": 1}]

    async def test_a_statement_past_its_timeout_fails_retryably_and_the_source_carries_on(
        self, case: Case
    ) -> None:
        assert case.sleep_query is not None
        source = registry().open(case.definition)
        try:
            assert isinstance(source, Database)
            started = time.monotonic()
            with pytest.raises(NodeFailure) as caught:
                await source.fetch(
                    case.sleep_query, [], read_only=True, max_rows=10, statement_timeout=0.3
                )
            assert time.monotonic() - started < 4, "the statement was not stopped at its timeout"
            failure = caught.value
            assert (failure.code, failure.retryable) == ("database.statement_timeout", True)
            assert_no_secret(case, str(failure))
            # The timeout was the statement's: the next one, on the same pool, has its own.
            again = await source.fetch(
                "SELECT 1 AS one", [], read_only=True, max_rows=10, statement_timeout=10
            )
            assert again.rows == [{"one": 1}]
        finally:
            await source.aclose()

    # What `typed_row_query` returns, as JSON: the same for every database.
    TYPED_ROW: ClassVar[dict[str, Any]] = {
        "price": 12.5,  # DECIMAL/NUMERIC(10, 2) 12.50: a number, not a string
        "whole": 42,  # DECIMAL/NUMERIC(10, 2) 42.00: an integer
        "day": "2024-05-06",  # DATE
        "at": "2024-05-06T07:08:09.123456",  # DATETIME(6) / TIMESTAMP (no time zone)
        "clock": "12:34:56",  # TIME
        "doc": {"a": [1, 2.5, None], "b": "x"},  # a JSON column / jsonb: the value, not its text
        "raw": "00ff10",  # BLOB/VARBINARY / bytea: hex
        "nothing": None,  # NULL
    }

    async def test_values_map_to_json_the_same_way_for_every_database(self, case: Case) -> None:
        assert case.typed_row_query is not None
        result = await self.fetch(case, case.typed_row_query)
        assert result.columns == list(self.TYPED_ROW)
        assert result.rows == [self.TYPED_ROW]
        assert json.loads(json.dumps(result.rows, allow_nan=False)) == result.rows


class HttpApiConformance:
    """Sources that `http` nodes use. The case's definition allows the private network (the
    local server listens on 127.0.0.1); without that, the same source must refuse it."""

    async def test_private_addresses_are_refused_unless_allowed(self, case: Case) -> None:
        assert case.definition.config.get("allow_private_network") is True
        allowed = registry().open(case.definition)
        refused = registry().open(with_config(case.definition, {"allow_private_network": False}))
        try:
            assert isinstance(allowed, HttpApi)
            assert isinstance(refused, HttpApi)
            assert refused.base_url == allowed.base_url
            before = await case.connections()
            with pytest.raises(BlockedAddressError) as caught:
                await refused.client().get("/echo")
            assert caught.value.code == "http.blocked_address"
            assert await case.connections() == before, "a blocked request reached the server"
            assert (await allowed.client().get("/echo")).status_code == 200
        finally:
            await allowed.aclose()
            await refused.aclose()

    async def test_check_of_a_private_address_not_allowed_is_a_node_failure(
        self, case: Case
    ) -> None:
        source = registry().open(with_config(case.definition, {"allow_private_network": False}))
        try:
            failure = await checked_failure(source)
        finally:
            await source.aclose()
        assert (failure.code, failure.retryable) == ("http.blocked_address", False)
