"""A small local CRM API, standing in for the `crm-api` source of the example workflows."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free local port while inside; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class CrmApi:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/v2/accounts/{account_id}", self._account)
        app.router.add_post("/hooks/opportunities", self._opportunity)
        app.router.add_post("/v2/leads", self._lead)
        app.router.add_post("/v2/projects/{project}/tasks:batchCreate", self._tasks)
        app.router.add_get("/big", self._big)
        app.router.add_get("/status/{status}", self._status)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/chunked", self._chunked)
        app.router.add_get("/plain", self._plain)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/set-cookie", self._set_cookie)
        app.router.add_get("/slow", self._slow)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        response: web.StreamResponse = await handler(request)
        return response

    async def _account(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        if account_id == "acc_missing00":
            return web.json_response({"error": "no such account"}, status=404)
        contacts = (
            [{"email": "ada@example.com"}, {"email": "bob@example.com"}]
            if request.query.get("include_contacts") == "true"
            else []
        )
        return web.json_response(
            {
                "account": {
                    "id": account_id,
                    "name": "Acme GmbH",
                    "domain": "acme.example",
                    "industry": "Manufacturing",
                    "firmographics": {"employee_count": 250, "annual_revenue_usd": 42_000_000},
                    "contacts": contacts,
                    "deals": [
                        {"id": "d1", "stage": "open", "value": 1000},
                        {"id": "d2", "stage": "closed", "value": 5000},
                    ],
                }
            }
        )

    async def _opportunity(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"id": f"opp_{next(self._ids)}", "owner": {"email": "rep@example.com"}}, status=201
        )

    async def _lead(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"id": f"lead_{next(self._ids)}", "status": body["status"]})

    async def _tasks(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        return web.json_response({"tasks": [{"key": f"{project}-1"}, {"key": f"{project}-2"}]})

    async def _big(self, request: web.Request) -> web.Response:
        return web.json_response({"blob": "x" * int(request.query.get("size", "10000"))})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "forced"}, status=int(request.match_info["status"]))

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _echo(self, request: web.Request) -> web.Response:
        """Any method: answers with what it received (the body as JSON, or null)."""
        body = await request.json() if request.body_exists else None
        return web.json_response(
            {"method": request.method, "query": dict(request.query), "body": body},
            headers={"X-Echo": "yes"},
        )

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        """`size` bytes of JSON, sent chunked: no Content-Length to trust."""
        size = int(request.query.get("size", "10000"))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"blob": "')
        for _ in range(size // 1000):
            await response.write(b"x" * 1000)
        await response.write(b'"}')
        await response.write_eof()
        return response

    async def _plain(self, request: web.Request) -> web.Response:
        return web.Response(text="plain words, not JSON")

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _set_cookie(self, request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "s3cret-session")
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "2")))
        return web.json_response({"slow": True})
