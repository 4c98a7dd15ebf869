"""A scripted HTTP server for WHEP protocol tests: each request pops the next scripted reply."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

Reply = web.StreamResponse | Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class ScriptedWhep:
    """Routes everything under ``/``; POST/PATCH/DELETE replies come from per-method scripts.

    When a script is empty: POST → 500, PATCH → 204, DELETE → 200.
    """

    post: Sequence[Reply] = field(default_factory=list)
    patch: Sequence[Reply] = field(default_factory=list)
    delete: Sequence[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    base: str = ""
    post_delay: float = 0.0
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {
            "POST": list(self.post), "PATCH": list(self.patch), "DELETE": list(self.delete),
        }  # fmt: skip

    async def __aenter__(self) -> ScriptedWhep:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/whep/endpoint") -> str:
        return self.base + path

    def requests(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        script = self._scripts.get(request.method, [])
        if request.method == "POST" and self.post_delay:
            await asyncio.sleep(self.post_delay)
        if not script:
            default = {"POST": 500, "PATCH": 204, "DELETE": 200}.get(request.method, 405)
            return web.Response(status=default)
        reply = script.pop(0)
        if callable(reply):
            return await reply(request)
        return reply


ANSWER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def created(location: str = "/whep/resource/1", **headers: str) -> web.Response:
    return web.Response(
        status=201,
        body=ANSWER.encode(),
        headers={"Content-Type": "application/sdp", "Location": location, **headers},
    )


def redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})
