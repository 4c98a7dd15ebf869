"""The answer shapes and the shaping WHEP proxy, without any network namespace (fast)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.interop.production.sdp_shapes import Shape, sdpfrag, shape_answer
from tests.interop.production.whep_proxy import SDPFRAG, Proxy

HOST = "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"
SRFLX = "a=candidate:2 1 udp 1694498815 127.0.0.1 40001 typ srflx raddr 127.0.0.1 rport 40000"
ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:0",
    "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijklmn", HOST, SRFLX, "a=end-of-candidates",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:1",
    "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijklmn", HOST, "a=end-of-candidates",
]) + "\r\n"  # fmt: skip


def sections(sdp: str) -> list[str]:
    """The m= sections of ``sdp`` (the session part dropped)."""
    return ["m=" + part for part in sdp.split("\r\nm=")[1:]]


@pytest.mark.parametrize(
    ("shape", "expected"), [("first", [2, 0]), ("last", [0, 2]), ("every", [2, 2])]
)
def test_candidate_placement(shape: Shape, expected: list[int]) -> None:
    shaped = shape_answer(shape, ANSWER)  # the two sections' candidates pooled, no duplicates
    counts = [section.count("a=candidate:") for section in sections(shaped)]
    ends = [section.count("a=end-of-candidates") for section in sections(shaped)]
    assert counts == expected
    assert ends == [1 if n else 0 for n in expected]
    assert shaped.endswith("\r\n") and "\n" not in shaped.replace("\r\n", "")


def test_ice_lite_is_added_at_session_level() -> None:
    shaped = shape_answer("ice-lite", ANSWER)
    session = shaped.split("\r\nm=")[0]
    assert "a=ice-lite" in session.split("\r\n")
    assert shaped.count("a=candidate:") == ANSWER.count("a=candidate:")


def test_tcp_only_rewrites_every_udp_candidate_as_passive() -> None:
    shaped = shape_answer("tcp-only", ANSWER)
    assert " udp " not in shaped
    assert "a=candidate:1 1 tcp 2130706431 127.0.0.1 40000 typ host tcptype passive" in shaped
    assert (
        "a=candidate:2 1 tcp 1694498815 127.0.0.1 40001 typ srflx raddr 127.0.0.1 rport 40000 "
        "tcptype passive"
    ) in shaped


def test_trickle_answer_has_no_candidates_and_the_sdpfrag_has_them_all() -> None:
    shaped = shape_answer("trickle", ANSWER)
    assert "a=candidate:" not in shaped and "a=end-of-candidates" not in shaped
    fragment = sdpfrag(ANSWER).split("\r\n")
    assert fragment[:5] == [
        "a=ice-ufrag:abcd",
        "a=ice-pwd:0123456789abcdefghijklmn",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:0",
        HOST,
    ]
    assert fragment[5:] == [SRFLX, "a=end-of-candidates", ""]


def test_plain_is_unchanged() -> None:
    assert shape_answer("plain", ANSWER) == ANSWER


# --- the proxy, in front of a fake sender ------------------------------------------------


@pytest.fixture
async def proxy_and_sender() -> AsyncIterator[tuple[str, int, list[str]]]:
    """(proxy base URL, sender port, requests the sender saw)."""
    seen: list[str] = []

    async def offer(request: web.Request) -> web.Response:
        seen.append(f"POST {request.path_qs} {await request.text()}")
        return web.Response(status=201, text=ANSWER, content_type="application/sdp",
                            headers={"Location": "/whep/res1"})  # fmt: skip

    async def other(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.Response(status=204)

    sender = web.Application()
    sender.router.add_post("/whep", offer)
    sender.router.add_route("*", "/whep/res1", other)
    async with (
        TestServer(sender, host="127.0.0.1") as upstream,
        TestServer(Proxy().app(), host="127.0.0.1") as proxy,
    ):
        yield str(proxy.make_url("")).rstrip("/"), upstream.port or 0, seen


async def test_proxy_shapes_the_answer_and_maps_the_location(
    proxy_and_sender: tuple[str, int, list[str]],
) -> None:
    base, port, seen = proxy_and_sender
    async with aiohttp.ClientSession() as http:
        url = f"{base}/first/{port}/whep?codec=VP8"
        headers = {"Content-Type": "application/sdp"}
        async with http.post(url, data="v=0\r\n", headers=headers) as response:
            assert response.status == 201
            assert response.headers["Location"] == f"/first/{port}/whep/res1"
            assert [s.count("a=candidate:") for s in sections(await response.text())] == [2, 0]
        async with http.delete(f"{base}/first/{port}/whep/res1") as response:
            assert response.status == 204
    assert seen == ["POST /whep?codec=VP8 v=0\r\n", "DELETE /whep/res1"]


async def test_proxy_answers_trickle_patches_with_the_sender_candidates(
    proxy_and_sender: tuple[str, int, list[str]],
) -> None:
    base, port, seen = proxy_and_sender
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/sdp"}
        async with http.post(f"{base}/trickle/{port}/whep", data="v=0", headers=headers) as r:
            assert r.status == 201
            assert "a=candidate:" not in await r.text()
            assert r.headers["Accept-Patch"] == SDPFRAG
            etag, location = r.headers["ETag"], r.headers["Location"]
        patch = {"Content-Type": SDPFRAG, "If-Match": '"stale"'}
        async with http.patch(f"{base}{location}", data="a=end-of-candidates", headers=patch) as r:
            assert r.status == 412
        patch["If-Match"] = etag
        async with http.patch(f"{base}{location}", data="a=end-of-candidates", headers=patch) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == SDPFRAG
            assert await r.text() == sdpfrag(ANSWER)
    assert seen == ["POST /whep v=0"]  # trickle PATCHes stop at the proxy
