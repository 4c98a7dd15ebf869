"""A WHEP proxy that reshapes the answer of any sender behind it (see ``sdp_shapes``).

    python -m tests.interop.production.whep_proxy [--port 0]

Prints ``READY http://127.0.0.1:PORT`` once listening. ``POST /{shape}/{port}/{path}``
forwards the offer to ``http://127.0.0.1:{port}/{path}`` (query kept) and returns the
sender's 201 with the answer in ``shape`` and its ``Location`` mapped back under
``/{shape}/{port}/``. ``DELETE`` and ``PATCH`` on such a Location go to the sender — except
a trickle PATCH (``application/trickle-ice-sdpfrag``) of a ``trickle`` resource: the proxy
answers it with 200 and the sender's candidates as an sdpfrag (RFC 8840, RFC 9725 §4.3),
after checking ``If-Match`` against the ETag of the 201. Every request is logged to stderr
as ``METHOD shape path -> status``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from tests.interop.production.sdp_shapes import SHAPES, Shape, sdpfrag, shape_answer

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
UPSTREAM_HOST = "127.0.0.1"
ROUTE = r"/{shape}/{port:\d+}/{tail:.*}"


def log(*parts: object) -> None:
    print("[whep-proxy]", *parts, file=sys.stderr, flush=True)


@dataclass
class TrickleResource:
    etag: str
    fragment: str


class Proxy:
    def __init__(self) -> None:
        self.trickle: dict[str, TrickleResource] = {}  # by proxied Location path
        self.http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(ROUTE, self.post)
        app.router.add_patch(ROUTE, self.patch)
        app.router.add_delete(ROUTE, self.delete)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def _close(self, _app: web.Application) -> None:
        if self.http is not None:
            await self.http.close()

    @staticmethod
    def _shape(request: web.Request) -> Shape:
        shape = request.match_info["shape"]
        if shape not in SHAPES:
            raise web.HTTPNotFound(text=f"unknown shape {shape!r}")
        return shape

    @staticmethod
    def _upstream(request: web.Request) -> URL:
        url = URL.build(
            scheme="http",
            host=UPSTREAM_HOST,
            port=int(request.match_info["port"]),
            path="/" + request.match_info["tail"],
        )
        return url.with_query(request.query)

    async def _forward(self, request: web.Request) -> tuple[int, bytes, dict[str, str]]:
        assert self.http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type",
                   "if-match", "authorization")}  # fmt: skip
        async with self.http.request(
            request.method, self._upstream(request), data=await request.read(), headers=headers
        ) as response:
            body = await response.read()
            return response.status, body, dict(response.headers)

    async def post(self, request: web.Request) -> web.StreamResponse:
        shape = self._shape(request)
        status, body, headers = await self._forward(request)
        log(f"POST {shape} {request.path_qs} -> {status}")
        if status != 201:
            return web.Response(status=status, body=body, headers=_passed(headers))
        answer = body.decode()
        location = self._proxied_location(request, headers.get("Location", ""))
        out = {"Location": location, "Content-Type": SDP}
        if shape == "trickle":
            etag = f'"{uuid.uuid4().hex}"'
            self.trickle[location] = TrickleResource(etag, sdpfrag(answer))
            out.update({"ETag": etag, "Accept-Patch": SDPFRAG})
        return web.Response(status=201, body=shape_answer(shape, answer).encode(), headers=out)

    def _proxied_location(self, request: web.Request, location: str) -> str:
        """The sender's Location (maybe relative) as a path under this proxy."""
        resolved = self._upstream(request).join(URL(location))
        if resolved.host != UPSTREAM_HOST or resolved.port is None:
            raise web.HTTPBadGateway(text=f"sender sent a foreign Location {location!r}")
        return f"/{request.match_info['shape']}/{resolved.port}{resolved.raw_path_qs}"

    async def patch(self, request: web.Request) -> web.StreamResponse:
        shape = self._shape(request)
        resource = self.trickle.get(request.path_qs)
        if resource is None or request.content_type != SDPFRAG:
            status, body, headers = await self._forward(request)
            log(f"PATCH {shape} {request.path_qs} -> {status} (forwarded)")
            return web.Response(status=status, body=body, headers=_passed(headers))
        if_match = request.headers.get("If-Match")
        if if_match not in (None, "*", resource.etag):
            log(f"PATCH {shape} {request.path_qs} -> 412 (If-Match {if_match})")
            return web.Response(status=412)
        await request.read()  # the client's candidates: the sender has them from the offer
        log(f"PATCH {shape} {request.path_qs} -> 200 (sdpfrag, If-Match {if_match})")
        return web.Response(
            status=200,
            body=resource.fragment.encode(),
            headers={"Content-Type": SDPFRAG, "ETag": resource.etag},
        )

    async def delete(self, request: web.Request) -> web.StreamResponse:
        shape = self._shape(request)
        self.trickle.pop(request.path_qs, None)
        status, body, headers = await self._forward(request)
        log(f"DELETE {shape} {request.path_qs} -> {status}")
        return web.Response(status=status, body=body, headers=_passed(headers))


def _passed(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() == "content-type"}


async def serve(port: int) -> None:
    runner = web.AppRunner(Proxy().app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, UPSTREAM_HOST, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY http://{UPSTREAM_HOST}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM (the default action ends the process)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="answer-shaping WHEP proxy")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
