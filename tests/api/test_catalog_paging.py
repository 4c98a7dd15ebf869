"""list_catalog pages through a catalog larger than one page (a small aiohttp server)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from avatar_rtc.api import ControlClient

ITEMS = [{"itemId": f"voice-{n:03d}", "type": "Voice"} for n in range(250)]


class Catalog:
    """Answers /v1/catalog-item/list; records the pagers it was sent."""

    def __init__(self, *, honour_offset: bool) -> None:
        self.honour_offset = honour_offset
        self.pagers: list[dict[str, Any]] = []
        self.authorizations: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        pager = body["pager"]
        self.pagers.append(pager)
        self.authorizations.append(request.headers["Authorization"])
        offset = pager["offset"] if self.honour_offset else 0
        page = ITEMS[offset : offset + pager["limit"]]
        return web.json_response({"objects": page, "totalCount": len(ITEMS)})


@contextlib.asynccontextmanager
async def serving(catalog: Catalog) -> AsyncIterator[str]:
    """Serve ``catalog`` on loopback; yields the matching avatar-session API URL."""
    app = web.Application()
    app.router.add_post("/v1/catalog-item/list", catalog.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/v1/avatar-session"))
    finally:
        await server.close()


async def test_all_pages_are_fetched() -> None:
    catalog = Catalog(honour_offset=True)
    async with serving(catalog) as api_url, ControlClient(api_url, "ks-for-paging") as client:
        items = await client.list_catalog("Voice")
    assert [i.item_id for i in items] == [i["itemId"] for i in ITEMS]
    assert catalog.pagers == [{"offset": o, "limit": 100} for o in (0, 100, 200)]
    assert set(catalog.authorizations) == {"KS ks-for-paging"}


async def test_a_server_ignoring_the_offset_does_not_loop_forever() -> None:
    catalog = Catalog(honour_offset=False)
    async with serving(catalog) as api_url, ControlClient(api_url, "ks-for-paging") as client:
        items = await client.list_catalog("Voice")
    assert len(items) == 100
    assert len(catalog.pagers) == 2
