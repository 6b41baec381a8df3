"""What the interceptor does with a call's unexpected exception (api/internal_errors.py): it is
reported to the error tracker at once, and recorded for the call's tenant in the background,
within a timeout, never raising nor holding the call up; before authentication, reported only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping

import pytest

from agentflow_grpc.api.internal_errors import InternalErrors
from agentflow_grpc.observability import error_reports

TENANT = uuid.UUID(int=5)
METHOD = "/agentflow.v1.WorkflowService/GetWorkflow"


@pytest.fixture
def reported() -> Iterator[list[tuple[BaseException, Mapping[str, str]]]]:
    seen: list[tuple[BaseException, Mapping[str, str]]] = []
    installed = error_reports.install(lambda exc, tags: seen.append((exc, tags)))
    try:
        yield seen
    finally:
        installed.uninstall()


async def test_a_tenants_crash_is_reported_and_recorded_in_the_background(
    reported: list[tuple[BaseException, Mapping[str, str]]],
) -> None:
    recorded: list[tuple[uuid.UUID, str, Exception]] = []

    async def record(tenant_id: uuid.UUID, method: str, exc: Exception) -> None:
        recorded.append((tenant_id, method, exc))

    errors = InternalErrors(record)
    crash = RuntimeError("boom")
    errors.crashed(crash, method=METHOD, request_id="r-1", tenant_id=TENANT)
    assert recorded == []  # not yet: it runs as a task of its own
    await errors.wait()

    assert recorded == [(TENANT, METHOD, crash)]
    assert reported == [(crash, {"method": METHOD, "request_id": "r-1", "tenant_id": str(TENANT)})]


async def test_before_authentication_a_crash_is_only_reported(
    reported: list[tuple[BaseException, Mapping[str, str]]],
) -> None:
    async def record(tenant_id: uuid.UUID, method: str, exc: Exception) -> None:
        raise AssertionError("no tenant, no record")

    errors = InternalErrors(record)
    errors.crashed(ValueError("early"), method=METHOD, request_id="r-2", tenant_id=None)
    await errors.wait()
    assert [tags for _, tags in reported] == [{"method": METHOD, "request_id": "r-2"}]


async def test_a_slow_or_failing_recording_is_given_up_without_a_trace_on_the_call(
    reported: list[tuple[BaseException, Mapping[str, str]]],
) -> None:
    cancelled = asyncio.Event()

    async def hang(tenant_id: uuid.UUID, method: str, exc: Exception) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def fail(tenant_id: uuid.UUID, method: str, exc: Exception) -> None:
        raise ConnectionError("the database is gone")

    slow, failing = InternalErrors(hang, timeout=0.05), InternalErrors(fail)
    started = time.perf_counter()
    slow.crashed(RuntimeError("a"), method=METHOD, request_id="r-3", tenant_id=TENANT)
    failing.crashed(RuntimeError("b"), method=METHOD, request_id="r-4", tenant_id=TENANT)
    assert time.perf_counter() - started < 0.05  # the call is not held up
    await asyncio.wait_for(asyncio.gather(slow.wait(), failing.wait()), timeout=5)
    assert cancelled.is_set()
    assert len(reported) == 2


async def test_a_tracker_that_fails_does_not_fail_the_call() -> None:
    tried: list[str] = []

    def broken(exc: BaseException, tags: Mapping[str, str]) -> None:
        tried.append(tags["request_id"])
        raise OSError("the tracker is down")

    installed = error_reports.install(broken)
    try:
        InternalErrors(None).crashed(
            RuntimeError("c"), method=METHOD, request_id="r-5", tenant_id=TENANT
        )  # returns: the tracker's failure is logged, not raised
    finally:
        installed.uninstall()
    assert tried == ["r-5"]
    assert not error_reports.enabled()
