"""How an OpenAI SDK error becomes a node failure and a metric's `error_type`: a timeout only
when something timed out, whichever HTTP transport the SDK used."""

from __future__ import annotations

import httpx2
import openai
import pytest

from agentflow_grpc.sources.genai_telemetry import error_type, timed_out
from agentflow_grpc.sources.openai_compatible import provider_failure

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def _timeout_caused_by(cause: BaseException) -> openai.APITimeoutError:
    """As the SDK raises it: APITimeoutError from the transport's ConnectTimeout, itself
    raised from what the transport caught."""
    try:
        try:
            raise cause
        except BaseException as caught:
            raise httpx2.ConnectTimeout(str(caught)) from caught
    except httpx2.ConnectTimeout as transport_error:
        try:
            raise openai.APITimeoutError(request=REQUEST) from transport_error
        except openai.APITimeoutError as exc:
            return exc


@pytest.mark.parametrize(
    "cause",
    [ConnectionRefusedError(111, "Connection refused"), ConnectionResetError(104, "reset")],
)
def test_a_refused_or_reset_connection_reported_as_a_connect_timeout_is_unavailable(
    cause: OSError,
) -> None:
    # openai's aiohttp transport maps every aiohttp.ClientConnectionError to ConnectTimeout.
    exc = _timeout_caused_by(cause)
    assert not timed_out(exc)
    failure = provider_failure(exc)
    assert (failure.code, failure.retryable) == ("provider.unavailable", True)
    assert error_type(exc) == "APIConnectionError"


@pytest.mark.parametrize("cause", [TimeoutError("read"), ValueError("no OSError at all")])
def test_a_timeout_caused_by_a_timeout_or_by_no_connection_error_is_a_timeout(
    cause: BaseException,
) -> None:
    exc = _timeout_caused_by(cause)
    assert timed_out(exc)
    failure = provider_failure(exc)
    assert (failure.code, failure.retryable) == ("provider.timeout", True)
    assert error_type(exc) == "timeout"


def test_a_timeout_without_a_cause_is_a_timeout() -> None:
    exc = openai.APITimeoutError(request=REQUEST)
    assert timed_out(exc)
    assert provider_failure(exc).code == "provider.timeout"


def test_a_connection_error_is_unavailable_and_a_status_error_keeps_its_status() -> None:
    refused = openai.APIConnectionError(request=REQUEST)
    assert not timed_out(refused)
    assert provider_failure(refused).code == "provider.unavailable"
    assert error_type(refused) == "APIConnectionError"
    response = httpx2.Response(503, request=REQUEST)
    unavailable = openai.InternalServerError("down", response=response, body=None)
    assert error_type(unavailable) == "503"
    assert provider_failure(unavailable).retryable
