"""Serving a :class:`FakeProvider`: in a background thread (:class:`FakeProviderServer`) or
standalone until a signal (:func:`main`, ``python -m agentflow_grpc.testing``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from agentflow_grpc.testing._provider import FakeProvider
from agentflow_grpc.testing._rules import RecordedRequest, Rule

_SHUTDOWN_TIMEOUT = 0.5  # seconds the server waits for in-flight requests when stopping


async def _serve(
    provider: FakeProvider,
    host: str,
    port: int,
    stop: asyncio.Event,
    ready: Callable[[str], None],
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve ``provider`` on ``host:port`` (over TLS with ``ssl_context``) until ``stop`` is set;
    ``ready`` gets the base URL."""
    runner = web.AppRunner(provider.app(), shutdown_timeout=_SHUTDOWN_TIMEOUT, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        bound_port = runner.addresses[0][1]
        scheme = "http" if ssl_context is None else "https"
        address = f"[{host}]" if ":" in host else host
        ready(f"{scheme}://{address}:{bound_port}")
        await stop.wait()
    finally:
        await runner.cleanup()


class FakeProviderServer:
    """Runs a :class:`FakeProvider` in a background thread with its own event loop.

    Use as ``with`` or ``async with``, or call :meth:`start` and :meth:`stop`. Binds a free
    port on 127.0.0.1 unless told otherwise; :attr:`url` is the base URL (no ``/v1``). With an
    ``ssl_context`` it serves https (the fake Microsoft identity platform must be: azure-identity
    takes no other authority); several servers may serve one ``provider``.
    """

    def __init__(
        self,
        provider: FakeProvider | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.provider = provider if provider is not None else FakeProvider(latency=latency)
        self._host, self._port = host, port
        self._ssl_context = ssl_context
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the fake provider server is not running")
        return self._url

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; return once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the fake provider server is already started")
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            self.stop()
            raise RuntimeError("the fake provider server failed to start") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread; idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the loop already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the fake provider server did not stop in time")
        self._thread = self._loop = self._stop = self._url = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        def ready(url: str) -> None:
            self._url = url
            self._ready.set()

        await _serve(self.provider, self._host, self._port, self._stop, ready, self._ssl_context)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # Shortcuts to the provider's state.
    def add_rule(self, **kwargs: Any) -> Rule:
        """See :meth:`FakeProvider.add_rule`."""
        return self.provider.add_rule(**kwargs)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.provider.requests

    def reset(self) -> None:
        self.provider.reset()

    def set_latency(self, seconds: float) -> None:
        self.provider.set_latency(seconds)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the fake provider standalone until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m agentflow_grpc.testing",
        description="A fake OpenAI-compatible provider for tests, benchmarks and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to requests")
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        provider = FakeProvider(latency=args.latency)

        def ready(url: str) -> None:
            print(f"fake provider listening on {url}", flush=True)

        await _serve(provider, args.host, args.port, stop, ready)

    asyncio.run(run())
