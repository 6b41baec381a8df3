"""The outbound HTTP guard: private addresses refused at connect time, bodies capped."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpcore2
import httpx2
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from agentflow_grpc.sources.safe_http import (
    BlockedAddressError,
    ResponseTooLargeError,
    create_client,
    is_public_address,
    read_limited,
)

ORIGINAL_CONNECT = httpcore2.AnyIOBackend.connect_tcp


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()  # no Content-Length: the cap must hold while streaming
    await response.prepare(request)
    for _ in range(int(request.match_info["size"]) // 100):
        await response.write(b"x" * 100)
    await response.write_eof()
    return response


@pytest_asyncio.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/", _ok)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/chunked/{size}", _chunked)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


def _url(server: TestServer, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> httpcore2.AsyncNetworkStream:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(httpcore2.AnyIOBackend, "connect_tcp", refuse)


def _resolver(table: dict[str, list[str]], calls: list[tuple[str, int]] | None = None) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append((host, port))
        return table[host]

    return resolve


@pytest.mark.asyncio
async def test_local_server_is_refused_by_default(server: TestServer) -> None:
    async with create_client() as client:
        with pytest.raises(BlockedAddressError) as caught:
            await client.get(_url(server))
    assert caught.value.code == "http.blocked_address"
    assert "127.0.0.1" in caught.value.message
    assert "allow_private_network" in caught.value.message


@pytest.mark.asyncio
async def test_local_server_is_allowed_on_request(server: TestServer) -> None:
    async with create_client(allow_private_network=True) as client:
        response = await client.get(_url(server))
    assert response.status_code == 200
    assert response.text == "ok"


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.1"])
async def test_loopback_names_and_spellings_are_refused(host: str) -> None:
    async with create_client() as client:
        with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1|::1"):
            await client.get(f"http://{host}:9/")


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://100.64.0.1/",
        "http://0.0.0.0:80/",
        "https://[::ffff:127.0.0.1]/",
    ],
)
async def test_literal_private_ips_are_refused_without_connecting(url: str) -> None:
    calls: list[tuple[str, int]] = []
    async with create_client(resolver=_resolver({}, calls)) as client:
        with pytest.raises(BlockedAddressError):
            await client.get(url)
    assert calls == []  # a literal IP is never looked up


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_connect")
@pytest.mark.parametrize("addresses", [["10.0.0.5"], ["93.184.215.14", "10.0.0.5"]])
async def test_names_resolving_to_any_private_address_are_refused(addresses: list[str]) -> None:
    calls: list[tuple[str, int]] = []
    resolver = _resolver({"api.example.test": addresses}, calls)
    async with create_client(resolver=resolver) as client:
        with pytest.raises(BlockedAddressError, match=r"api\.example\.test.*10\.0\.0\.5"):
            await client.get("https://api.example.test/v1/items")
    assert calls == [("api.example.test", 443)]


class _RecordingStream(httpcore2.AsyncNetworkStream):
    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        self.seen.append(server_hostname)
        raise httpcore2.ConnectError("stop after recording")

    async def aclose(self) -> None:
        pass


@pytest.mark.asyncio
async def test_connects_to_the_checked_ip_and_verifies_tls_for_the_hostname(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[object] = []

    async def record(self: object, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        seen.append((host, port))
        return _RecordingStream(seen)

    monkeypatch.setattr(httpcore2.AnyIOBackend, "connect_tcp", record)
    resolver = _resolver({"api.example.test": ["93.184.215.14"]})
    async with create_client(resolver=resolver) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get("https://api.example.test/")
    assert seen == [("93.184.215.14", 443), "api.example.test"]


@pytest.mark.asyncio
async def test_redirect_targets_are_checked_too(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_port = server.port
    assert local_port is not None

    async def to_local_server(self: Any, host: str, port: int, *args: Any, **kw: Any) -> Any:
        assert host == "93.184.215.14"  # only the checked public address is dialled
        return await ORIGINAL_CONNECT(self, "127.0.0.1", local_port, *args, **kw)

    monkeypatch.setattr(httpcore2.AnyIOBackend, "connect_tcp", to_local_server)
    resolver = _resolver({"public.example.test": ["93.184.215.14"]})
    async with create_client(resolver=resolver) as client:
        assert (await client.get("http://public.example.test/")).text == "ok"
        with pytest.raises(BlockedAddressError, match=r"169\.254\.169\.254"):
            await client.get("http://public.example.test/redirect?to=http://169.254.169.254/")


@pytest.mark.asyncio
async def test_redirects_are_followed_when_private_network_is_allowed(server: TestServer) -> None:
    async with create_client(allow_private_network=True) as client:
        response = await client.get(_url(server, f"/redirect?to={_url(server)}"))
    assert response.status_code == 200
    assert response.text == "ok"
    assert len(response.history) == 1


@pytest.mark.asyncio
async def test_proxy_settings_from_the_environment_are_ignored(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://proxy.invalid:3128")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with create_client(allow_private_network=True) as client:
        assert (await client.get(_url(server))).text == "ok"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),
        ("::", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::127.0.0.1", False),
        ("2002:7f00:1::", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.asyncio
@pytest.mark.parametrize(("size", "fits"), [(1000, True), (1100, False)])
async def test_read_limited_caps_a_streamed_body(server: TestServer, size: int, fits: bool) -> None:
    async with (
        create_client(allow_private_network=True) as client,
        client.stream("GET", _url(server, f"/chunked/{size}")) as response,
    ):
        assert "content-length" not in response.headers
        if fits:
            assert await read_limited(response, max_bytes=1000) == b"x" * size
        else:
            with pytest.raises(ResponseTooLargeError, match="larger than 1000 bytes") as caught:
                await read_limited(response, max_bytes=1000)
            assert caught.value.code == "http.response_too_large"


class _UnreadableStream(httpx2.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover


@pytest.mark.asyncio
async def test_read_limited_refuses_a_declared_length_before_reading() -> None:
    response = httpx2.Response(
        200,
        headers={"content-length": "5000"},
        stream=_UnreadableStream(),
        request=httpx2.Request("GET", "https://api.example.test/"),
    )
    with pytest.raises(ResponseTooLargeError, match=r"api\.example\.test"):
        await read_limited(response, max_bytes=1000)
