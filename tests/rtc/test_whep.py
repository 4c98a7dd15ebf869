"""WHEP signalling against a scripted HTTP server (no WebRTC involved)."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
from aiohttp import web

from avatar_rtc.errors import (
    CodecNegotiationError,
    NetworkError,
    RequestTimeoutError,
    WhepConflictError,
    WhepError,
    WhepNotFoundError,
    WhepUnsupportedMediaTypeError,
)
from avatar_rtc.http.retry import parse_retry_after
from avatar_rtc.rtc.whep import WhepClient, parse_link_ice_servers

from .scripted_whep import ANSWER, ScriptedWhep, created, redirect

OFFER = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def test_201_returns_answer_and_location() -> None:
    async with ScriptedWhep(post=[created("/whep/resource/abc", ETag='"e1"')]) as server:
        async with WhepClient(server.url()) as client:
            response = await client.offer(OFFER)
        post = server.requests("POST")[0]
    assert response.sdp == ANSWER and not response.counter_offer
    assert response.location == server.base + "/whep/resource/abc"
    assert response.etag == '"e1"'
    assert post.body == OFFER
    assert post.headers["Content-Type"] == "application/sdp"
    assert "Authorization" not in post.headers  # no token: no header at all
    # __aexit__ deleted the resource.
    assert [s.path for s in server.requests("DELETE")] == ["/whep/resource/abc"]


async def test_relative_location_resolves_against_final_url() -> None:
    script = [redirect(307, "/elsewhere/v2/ep"), created("res/9")]
    async with ScriptedWhep(post=script) as server, WhepClient(server.url("/whep/ep")) as client:
        response = await client.offer(OFFER)
    assert response.location == server.base + "/elsewhere/v2/res/9"


@pytest.mark.parametrize("codes", [(307,), (308,), (307, 308, 307)])
async def test_redirects_keep_method_body_and_bearer(codes: tuple[int, ...]) -> None:
    script = [redirect(code, f"/hop/{i}") for i, code in enumerate(codes)] + [created()]
    async with ScriptedWhep(post=script) as server:
        client = WhepClient(server.url(), bearer="tok-123456")
        await client.offer(OFFER)
        await client.aclose()
    posts = server.requests("POST")
    assert [p.path for p in posts] == ["/whep/endpoint"] + [f"/hop/{i}" for i in range(len(codes))]
    for post in posts:
        assert post.body == OFFER
        assert post.headers["Authorization"] == "Bearer tok-123456"
        assert post.headers["Content-Type"] == "application/sdp"


async def test_redirect_hop_cap() -> None:
    async with ScriptedWhep(post=[redirect(307, "/loop") for _ in range(12)]) as server:
        client = WhepClient(server.url(), max_redirects=10)
        with pytest.raises(WhepError, match="more than 10 redirects"):
            await client.offer(OFFER)
        await client.aclose()
    assert len(server.requests("POST")) == 11


@pytest.mark.parametrize("code", [301, 302])
async def test_301_302_are_errors(code: int) -> None:
    async with ScriptedWhep(post=[redirect(code, "/x")]) as server:
        client = WhepClient(server.url())
        with pytest.raises(WhepError, match="only 307/308") as info:
            await client.offer(OFFER)
        await client.aclose()
    assert info.value.status == code


async def test_empty_bearer_sends_no_authorization() -> None:
    async with ScriptedWhep(post=[created()]) as server:
        client = WhepClient(server.url(), bearer="")
        await client.offer(OFFER)
        await client.delete()
        await client.aclose()
    assert all("Authorization" not in s.headers for s in server.seen)


async def test_406_counter_offer_then_patch() -> None:
    counter = web.Response(
        status=406,
        body=b"v=0\r\ncounter-offer\r\n",
        headers={"Content-Type": "application/sdp", "Location": "/whep/resource/7"},
    )
    async with ScriptedWhep(post=[counter], patch=[web.Response(status=204)]) as server:
        client = WhepClient(server.url(), bearer="tok-abcdef")
        response = await client.offer(OFFER)
        assert response.counter_offer and "counter-offer" in response.sdp
        await client.patch_answer("v=0\r\nmy-answer\r\n")
        await client.aclose()
    patch = server.requests("PATCH")[0]
    assert patch.path == "/whep/resource/7"
    assert patch.headers["Content-Type"] == "application/sdp"
    assert patch.headers["Authorization"] == "Bearer tok-abcdef"
    assert "my-answer" in patch.body


async def test_406_without_sdp_is_an_error() -> None:
    async with ScriptedWhep(post=[web.Response(status=406, text="nope")]) as server:
        client = WhepClient(server.url())
        with pytest.raises(WhepError) as info:
            await client.offer(OFFER)
        await client.aclose()
    assert info.value.status == 406 and "nope" in str(info.value)


def _counter_offer(video: str) -> web.Response:
    """A 406 whose SDP offers ``video`` (an m= line's port and formats, then rtpmaps)."""
    port, *rtpmaps = video.split("|")
    body = "\r\n".join(["v=0", "o=- 3 3 IN IP4 127.0.0.1", "s=-", "t=0 0", port, *rtpmaps])
    return web.Response(
        status=406,
        body=(body + "\r\n").encode(),
        headers={"Content-Type": "application/sdp", "Location": "/whep/resource/9"},
    )


@pytest.mark.parametrize(
    ("video", "named"),
    [
        (
            "m=video 9 UDP/TLS/RTP/SAVPF 45 98 99|a=rtpmap:45 AV1/90000|a=rtpmap:98 VP9/90000"
            "|a=rtpmap:99 rtx/90000",
            "AV1/VP9",
        ),
        ("m=video 0 UDP/TLS/RTP/SAVPF 96|a=rtpmap:96 H264/90000", "H264 (port 0)"),
    ],
)
async def test_406_counter_offer_without_a_common_codec(video: str, named: str) -> None:
    async with ScriptedWhep(post=[_counter_offer(video)]) as server:
        client = WhepClient(server.url(), bearer="tok-abcdef")
        with pytest.raises(CodecNegotiationError) as info:
            await client.offer(OFFER)
        await client.delete()  # the counter-offer's resource is still known: it is deleted
        await client.aclose()
    error = info.value
    assert f"video {named}; we can receive H264/VP8 only" in str(error)
    assert "tok-abcdef" not in str(error)
    assert error.status == 406 and error.offered == ("H264", "VP8")
    assert [s.path for s in server.requests("DELETE")] == ["/whep/resource/9"]


async def test_406_counter_offer_with_a_receivable_codec_is_returned() -> None:
    video = "m=video 9 UDP/TLS/RTP/SAVPF 98 96|a=rtpmap:98 VP9/90000|a=rtpmap:96 VP8/90000"
    async with (
        ScriptedWhep(post=[_counter_offer(video)]) as server,
        WhepClient(server.url()) as client,
    ):
        response = await client.offer(OFFER)
    assert response.counter_offer and "VP8/90000" in response.sdp


async def test_409_with_retry_after_is_retried_then_succeeds() -> None:
    past = email.utils.formatdate(time.time() - 5, usegmt=True)
    script = [
        web.Response(status=409, headers={"Retry-After": "0"}),
        web.Response(status=503, headers={"Retry-After": past}),
        created(),
    ]
    async with ScriptedWhep(post=script) as server:
        client = WhepClient(server.url())
        response = await client.offer(OFFER)
        await client.aclose()
    assert response.sdp == ANSWER
    assert len(server.requests("POST")) == 3


# "1.5": the WHEP client once had its own parser that rejected decimals (and backed off ~0.5 s).
@pytest.mark.parametrize(("header", "at_least"), [("1", 0.9), ("1.5", 1.45)])
async def test_retry_after_seconds_are_honoured(header: str, at_least: float) -> None:
    script = [web.Response(status=429, headers={"Retry-After": header}), created()]
    async with ScriptedWhep(post=script) as server:
        client = WhepClient(server.url())
        started = time.monotonic()
        await client.offer(OFFER)
        elapsed = time.monotonic() - started
        await client.aclose()
    # Not a backoff of its own (below), nor the header read as ten times more (above).
    assert at_least <= elapsed < 10 * at_least


async def test_409_without_retry_after_is_a_conflict_at_once() -> None:
    body = json.dumps({"error": "stream already has a viewer"})
    script = [web.Response(status=409, text=body, content_type="application/json")]
    async with ScriptedWhep(post=script) as server:
        client = WhepClient(server.url())
        with pytest.raises(WhepConflictError, match="already has a viewer"):
            await client.offer(OFFER)
        await client.aclose()
    assert len(server.requests("POST")) == 1


async def test_409_retries_are_bounded() -> None:
    script = [web.Response(status=409, headers={"Retry-After": "0"}) for _ in range(10)]
    async with ScriptedWhep(post=script) as server:
        client = WhepClient(server.url(), max_attempts=3)
        with pytest.raises(WhepConflictError):
            await client.offer(OFFER)
        await client.aclose()
    assert len(server.requests("POST")) == 3


async def test_retry_after_beyond_deadline_fails_at_once() -> None:
    script = [web.Response(status=503, headers={"Retry-After": "600"}), created()]
    async with ScriptedWhep(post=script) as server:
        client = WhepClient(server.url(), retry_deadline=60.0, max_retry_wait=600.0)
        started = time.monotonic()
        with pytest.raises(WhepError) as info:
            await client.offer(OFFER)
        await client.aclose()
    # Not even half the deadline waited (one request takes milliseconds).
    assert info.value.status == 503 and time.monotonic() - started < 30.0


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, WhepNotFoundError), (415, WhepUnsupportedMediaTypeError), (500, WhepError)],
)
async def test_typed_errors(status: int, error: type[WhepError]) -> None:
    async with ScriptedWhep(post=[web.Response(status=status, text="why")]) as server:
        client = WhepClient(server.url())
        with pytest.raises(error) as info:
            await client.offer(OFFER)
        await client.aclose()
    assert type(info.value) is error
    assert info.value.status == status and info.value.body == "why"
    assert not server.requests("DELETE")  # nothing was created


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"<html>hi</html>", "text/html", "Content-Type text/html): <html>hi</html>"),
        (b"", "application/sdp", "Content-Type application/sdp): empty"),
        (b"this is not sdp", "application/sdp", "this is not sdp"),
    ],
)
async def test_a_201_without_an_sdp_answer_is_a_whep_error(
    body: bytes, content_type: str, said: str
) -> None:
    """A proxy's page or an empty body read as an answer without video: "it sends none of
    these codecs", a CodecNegotiationError that sent users after their codecs."""
    reply = web.Response(
        status=201, body=body, headers={"Content-Type": content_type, "Location": "/whep/r/1"}
    )
    async with ScriptedWhep(post=[reply]) as server:
        client = WhepClient(server.url())
        with pytest.raises(WhepError, match="without an SDP answer") as info:
            await client.offer(OFFER)
        await client.delete()  # the resource it named is deleted all the same
        await client.aclose()
    assert type(info.value) is WhepError and info.value.status == 201
    assert said in str(info.value)
    assert [r.path for r in server.requests("DELETE")] == ["/whep/r/1"]


async def test_a_200_is_said_to_be_no_201() -> None:
    reply = web.Response(status=200, body=ANSWER.encode(), content_type="application/sdp")
    async with ScriptedWhep(post=[reply]) as server:
        client = WhepClient(server.url())
        with pytest.raises(WhepError, match="answered HTTP 200, not the 201 Created"):
            await client.offer(OFFER)
        await client.aclose()


async def test_problem_details_are_surfaced() -> None:
    problem = {"type": "about:blank", "title": "Service Unavailable", "detail": "no egress"}
    reply = web.Response(
        status=502, text=json.dumps(problem), content_type="application/problem+json"
    )
    async with ScriptedWhep(post=[reply]) as server:
        client = WhepClient(server.url())
        with pytest.raises(WhepError, match=r"Service Unavailable.*no egress") as info:
            await client.offer(OFFER)
        await client.aclose()
    assert info.value.status == 502


async def test_link_headers_become_ice_servers() -> None:
    reply = created()
    reply.headers.add(
        "Link",
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; '
        'username="u1"; credential="pw-link-1"; credential-type="password", '
        "<https://example.net/doc>; rel=help",
    )
    reply.headers.add("Link", '<stun:stun.example.net>; rel="ice-server"')
    async with ScriptedWhep(post=[reply]) as server:
        client = WhepClient(server.url())
        response = await client.offer(OFFER)
        await client.aclose()
    urls = [s.url for s in response.ice_servers]
    assert urls == ["turn:turn.example.net:3478?transport=udp", "stun:stun.example.net"]
    turn = response.ice_servers[0]
    assert (turn.username, turn.credential) == ("u1", "pw-link-1")
    assert "pw-link-1" not in repr(response) and "pw-link-1" not in repr(turn)
    assert client.ice_servers == response.ice_servers


def test_link_parser_ignores_other_relations() -> None:
    assert parse_link_ice_servers('<turn:h>; rel="next"') == []
    assert parse_link_ice_servers("<https://x>; rel=ice-server") == []
    servers = parse_link_ice_servers("<turns:h:443?transport=tcp>;rel=ice-server")
    assert [s.url for s in servers] == ["turns:h:443?transport=tcp"]


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after(future)
    assert value is not None and 25 < value <= 30


async def test_delete_is_idempotent_and_carries_bearer() -> None:
    async with ScriptedWhep(post=[created()]) as server:
        client = WhepClient(server.url(), bearer="tok-zzzzzz")
        await client.offer(OFFER)
        assert await client.delete() is True
        assert await client.delete() is True
        await client.aclose()
    deletes = server.requests("DELETE")
    assert len(deletes) == 1
    assert deletes[0].headers["Authorization"] == "Bearer tok-zzzzzz"


async def test_delete_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async with ScriptedWhep(post=[created()], delete=[web.Response(status=500)]) as server:
        client = WhepClient(server.url())
        await client.offer(OFFER)
        assert await client.delete() is False
        await client.aclose()
    assert "DELETE" in caplog.text and "500" in caplog.text


async def test_delete_without_resource_is_a_no_op() -> None:
    client = WhepClient("http://127.0.0.1:9/whep")
    assert await client.delete() is False
    await client.aclose()


async def test_http_timeout() -> None:
    async with ScriptedWhep(post=[created()], post_delay=1.0) as server:
        client = WhepClient(server.url(), timeout=0.3)
        with pytest.raises(RequestTimeoutError):
            await client.offer(OFFER)
        await client.aclose()


async def test_connection_refused_is_a_network_error() -> None:
    client = WhepClient("http://127.0.0.1:9/whep")
    with pytest.raises(NetworkError):
        await client.offer(OFFER)
    await client.aclose()
