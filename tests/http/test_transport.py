"""HttpTransport over loopback: error mapping, redaction, the redirect hook."""

from __future__ import annotations

import socket
from contextlib import aclosing

import pytest

from avatar_rtc.errors import NetworkError, RequestTimeoutError
from avatar_rtc.http.transport import HttpResponse, HttpTransport
from avatar_rtc.redact import Secret

from ..rtc.scripted_whep import ScriptedWhep, created, redirect


class FollowAll:
    """Follows every 3xx to its Location; records the hop counts it was given."""

    def __init__(self) -> None:
        self.hops: list[int] = []

    def next_url(self, method: str, response: HttpResponse, hops: int) -> str | None:
        self.hops.append(hops)
        return response.url.rsplit("/", 1)[0] + response.headers["Location"]


class FollowNone:
    def next_url(self, method: str, response: HttpResponse, hops: int) -> str | None:
        return None


def _closed_port() -> int:
    with socket.socket() as sock:  # free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_no_answer_in_time_is_a_request_timeout_error() -> None:
    server = ScriptedWhep(post=[created()], post_delay=1.0)
    async with server, aclosing(HttpTransport(timeout=0.2)) as http:
        with pytest.raises(RequestTimeoutError, match=r"^probe: no answer within 0.2 s"):
            await http.request("POST", server.url(), label="probe")


async def test_refused_connection_is_a_network_error() -> None:
    async with aclosing(HttpTransport(timeout=5.0)) as http:
        with pytest.raises(NetworkError, match=r"^probe: request failed: Cannot connect"):
            await http.request("POST", f"http://127.0.0.1:{_closed_port()}/x", label="probe")


async def test_network_error_messages_are_redacted() -> None:
    secret = Secret("tok-http-layer-5f3a9c")  # registered for redaction
    async with aclosing(HttpTransport(timeout=5.0)) as http:
        with pytest.raises(NetworkError) as info:  # aiohttp's message quotes the bad URL
            await http.request("POST", f"http://[{secret.reveal()}/x", label="probe")
    assert secret.reveal() not in str(info.value) and "***" in str(info.value)


async def test_redirect_policy_repeats_the_request_with_its_headers() -> None:
    script = [redirect(307, "/one"), redirect(308, "/two"), created()]
    policy = FollowAll()
    async with ScriptedWhep(post=script) as server, aclosing(HttpTransport(timeout=5.0)) as http:
        response = await http.request(
            "POST",
            server.url("/start"),
            label="probe",
            headers={"Authorization": "Bearer tok-redirected"},
            data=b"payload",
            redirects=policy,
        )
    assert response.status == 201 and response.url == server.url("/two")
    assert policy.hops == [0, 1]
    posts = server.requests("POST")
    assert [p.path for p in posts] == ["/start", "/one", "/two"]
    assert all(p.body == "payload" for p in posts)
    assert all(p.headers["Authorization"] == "Bearer tok-redirected" for p in posts)


async def test_a_policy_may_return_the_redirect_itself() -> None:
    server = ScriptedWhep(post=[redirect(307, "/one")])
    async with server, aclosing(HttpTransport(timeout=5.0)) as http:
        response = await http.request("POST", server.url(), label="probe", redirects=FollowNone())
    assert response.status == 307 and response.headers["Location"] == "/one"
    assert len(server.requests("POST")) == 1


async def test_response_helpers() -> None:
    reply = created(**{"Retry-After": "1.5", "Content-Type": "Application/SDP; charset=utf-8"})
    async with ScriptedWhep(post=[reply]) as server, aclosing(HttpTransport(timeout=5.0)) as http:
        response = await http.request("POST", server.url(), label="probe")
    assert response.retry_after == 1.5
    assert response.content_type == "application/sdp"
    assert response.text().startswith("v=0")
