"""A loopback HTTP server whose every answer comes from a settable function (one per case)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Canned:
    """One HTTP answer: status, headers, body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def response(self) -> web.Response:
        return web.Response(status=self.status, headers=self.headers, body=self.body)


async def _not_set(request: web.Request) -> web.StreamResponse:
    return web.Response(status=599)


class ReplyServer:
    """``async with ReplyServer() as server``: ``server.reply`` answers every request;
    ``server.seen`` keeps (method, path, Authorization) of each, until cleared."""

    def __init__(self) -> None:
        self.reply: Reply = _not_set
        self.seen: list[tuple[str, str, str | None]] = []
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ReplyServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def answer(self, canned: Canned) -> None:
        """Answer every request with ``canned`` from now on."""

        async def reply(request: web.Request) -> web.StreamResponse:
            return canned.response()

        self.reply = reply

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.seen.append((request.method, request.path, request.headers.get("Authorization")))
        return await self.reply(request)
