"""Fuzz: WHEP responses (status, Location, Link, Retry-After, ETag, Content-Type, Accept-Patch,
body) against the WHEP client, over loopback HTTP.

Each case is one WHEP exchange: a POST (offer), then maybe a trickle PATCH, an ICE restart
PATCH or the answer to a counter-offer; then the DELETE, itself answered with a fuzzed
response. What
the client returns is the documented success (a ``WhepResponse``, a fragment or ``None``, and
``delete()`` never raises); anything else must be a typed error. Redirects may lead to a
second loopback server (another origin), which must never see the Bearer token.

``parse_retry_after`` and ``parse_link_ice_servers``, the two header parsers, also get a
share of cases in process.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from hypothesis import example, given, note

from avatar_rtc.http.retry import parse_retry_after
from avatar_rtc.rtc.sdp_candidates import build_sdpfrag
from avatar_rtc.rtc.whep import WhepClient, parse_link_ice_servers

from .conftest import fuzz_settings
from .planted import CASES, JWT, SECRETS, check_outcome
from .runner import http_area
from .seeds import real_seeds
from .server import Canned
from .strategies import (
    header_text,
    json_body,
    loopback_only,
    plant,
    raw_body,
    sdp_mutation,
    seeded,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EXCHANGE_CASES = 1500
PARSE_CASES = 2500

FRAGMENT = build_sdpfrag(
    ice_ufrag="fzUf", ice_pwd="fuzzpasswordfuzzpassword", mid="0",
    candidates=["1 1 udp 2130706431 127.0.0.1 9 typ host"], end=True,
)  # fmt: skip
# Mostly 201: the headers matter most there.
_STATUSES = [201] * 14 + [200, 204, 301, 302, 303, 307, 308, 400, 404, 405, 406, 409, 410, 412,
                          415, 422, 429, 500, 501, 502, 503, 599]  # fmt: skip
_CONTENT_TYPES = (
    "application/sdp", "APPLICATION/SDP; charset=utf-8", "application/sdp; charset=bogus",
    "application/sdp; charset=rot13", "application/sdp; charset=utf-16",
    "application/problem+json", "application/json; charset=utf-8", "text/html",
    "application/trickle-ice-sdpfrag", "", ";;;", "application/sdp;charset=",
)  # fmt: skip
_RETRY_AFTER = (
    "0", "0.01", "-3", "1e999", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT",
    "Tue, 01 Jan 99999 00:00:00 GMT", "Mon, 31 Feb 2024 00:00:00 GMT", "0, 1 Jan 1 0:0:0 -9999",
    "Fri, 31 Dec 9999 23:59:59 +9999", "1" * 400,
)  # fmt: skip
_ACCEPT_PATCH = (
    "application/trickle-ice-sdpfrag",
    "application/sdp, application/trickle-ice-sdpfrag",
)
_LINK_URLS = (
    "turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp", "stun:127.0.0.1",
    "http://127.0.0.1/x", "", "turn:", "turn:[::1", "TURN:127.0.0.1",
)  # fmt: skip
_LINK_PARAMS = (
    'rel="ice-server"', "rel=ice-server", 'rel="other"', "rel", 'username="{}"', "username={}",
    'credential="{}"', 'credential-type="password"', '"', ";", "{}=",
)  # fmt: skip


def _either(rng: random.Random, values: tuple[str, ...]) -> str:
    """One of ``values``, or a random header value."""
    return rng.choice(values) if rng.random() < 0.6 else header_text(rng)


def _link(rng: random.Random) -> str:
    """One to three ``Link`` entries, well or badly formed, credentials planted."""
    entries = []
    for _ in range(rng.randint(1, 3)):
        params = [rng.choice(_LINK_PARAMS) for _ in range(rng.randint(0, 5))]
        entry = "; ".join(
            [f"<{_either(rng, _LINK_URLS)}>", *(p.format(header_text(rng)) for p in params)]
        )
        entries.append(entry)
    return rng.choice((", ", ",", " , ")).join(entries)


def _path(rng: random.Random) -> str:
    """A path segment of any printable characters but / and \\ (the host stays fixed)."""
    text = header_text(rng, 20, planted=False)
    return plant(rng, "".join(c for c in text if c not in "/\\"))


def _location(rng: random.Random, other_base: str) -> str:
    """A Location on this server (relative or absolute), on another origin, or broken;
    never a host off loopback."""
    pick = rng.randrange(4)
    if pick == 0:
        return "/r/" + _path(rng)
    if pick == 1:
        return "r/" + _path(rng)
    if pick == 2:
        return other_base + "/r/" + _path(rng)
    return rng.choice((
        "", "?q=1", "#frag", "http://[", "http://127.0.0.1:0/x", "http://127.0.0.1:99999/x",
        "ftp://127.0.0.1/x", "javascript:alert(1)", "data:,x", "/r/%zz", "/r/%00",
        other_base.replace("http://", "http://user:pass@") + "/r/creds",
        other_base.replace("http://", "https://") + "/r/tls",
    ))  # fmt: skip


def _responses(
    bodies: Callable[[random.Random], bytes], other_base: str
) -> Callable[[random.Random], Canned]:
    def build(rng: random.Random) -> Canned:
        values: dict[str, Callable[[], str]] = {
            "Location": lambda: _location(rng, other_base),
            "Link": lambda: _link(rng),
            "Retry-After": lambda: _either(rng, _RETRY_AFTER),
            "ETag": lambda: header_text(rng),
            "Content-Type": lambda: _either(rng, _CONTENT_TYPES),
            "Accept-Patch": lambda: _either(rng, _ACCEPT_PATCH),
        }
        headers = {name: value() for name, value in values.items() if rng.random() < 0.5}
        return Canned(rng.choice(_STATUSES), headers, bodies(rng))

    return build


@dataclass(frozen=True)
class Exchange:
    """One case: the answers to the first POST, the PATCH and the DELETE (None: a good one)."""

    first: Canned
    patch: Canned | None = None
    delete: Canned | None = None
    op: str = "offer"  # or "trickle", "restart" (ICE), "answer" (to a counter-offer)


def _problem_fields() -> dict[str, Any]:
    return {"title": "Conflict", "detail": "busy", "error": "no", "status": 409, "type": "about:x"}


def _replies(
    good: Canned, first: Canned, patch: Canned, delete: Canned
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The server of one case: the fuzzed answer to the first POST, a good one after a
    redirect, then the fuzzed PATCH and DELETE answers."""

    async def reply(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return (first if request.path == "/whep" else good).response()
        return (patch if request.method == "PATCH" else delete).response()

    return reply


async def _exchange(url: str, op: str) -> None:
    # One attempt: a retry would only add a backoff wait (Retry-After is parsed all the same).
    client = WhepClient(url, bearer=JWT, timeout=5.0, max_attempts=1)
    try:
        response = await client.offer("v=0\r\n")
        if op == "trickle":
            await client.trickle(FRAGMENT)
        elif op == "restart":
            await client.restart_ice(FRAGMENT)
        elif op == "answer" and response.counter_offer:
            await client.patch_answer("v=0\r\n")
    finally:
        try:
            await client.delete()
        except Exception as exc:  # documented: never raises (not even a typed error)
            raise AssertionError(f"delete() raised {exc!r}") from exc
        finally:
            await client.aclose()


def test_whep_responses(caplog: pytest.LogCaptureFixture) -> None:
    with http_area(caplog, "whep-exchange", EXCHANGE_CASES, servers=2) as area:
        server, other = area.servers
        seeds = area.runner.run(real_seeds())
        answer = loopback_only(seeds.answers[0]).encode()
        good = Canned(201, {"Content-Type": "application/sdp", "Location": "/res/1"}, answer)
        other.answer(good)
        mutated, problem = sdp_mutation(seeds.answers), json_body(_problem_fields())

        def body(rng: random.Random) -> bytes:
            pick = rng.randrange(4)
            if pick == 0:
                return answer
            if pick == 1:
                return loopback_only(mutated(rng)).encode()
            return problem(rng) if pick == 2 else raw_body(rng)

        response = _responses(body, other.base)

        def build(rng: random.Random) -> Exchange:
            op = rng.choice(("offer", "trickle", "restart", "answer"))
            return Exchange(response(rng), response(rng), response(rng), op)

        @fuzz_settings(EXCHANGE_CASES)
        @given(exchange=seeded(build))
        @example(  # a redirect to another origin, with credentials in the URL
            Exchange(Canned(307, {"Location": f"{other.base}/r/x".replace("//", "//u:p@")}))
        )
        @example(Exchange(Canned(201, {"Location": "http://["}, answer)))  # urljoin ValueError
        @example(Exchange(good, delete=Canned(301, {"Location": "/r/x"})))  # delete() raised
        @example(  # same origin, credentials in the URL beside the Bearer: aiohttp ValueError
            Exchange(Canned(307, {"Location": server.base.replace("//", "//u:p@") + "/r/x"}))
        )
        @example(Exchange(Canned(500, {}, ("x" * 290 + SECRETS[1]).encode())))  # cut secret
        @example(  # a charset Python does not know
            Exchange(Canned(400, {"Content-Type": "application/json; charset=bogus"}, b"{}"))
        )
        def case(exchange: Exchange) -> None:
            first, op = exchange.first, exchange.op
            patch, delete = exchange.patch or good, exchange.delete or good
            other.seen.clear()
            server.reply = _replies(good, first, patch, delete)
            area.run(exchange, lambda: _exchange(server.base + "/whep", op))
            assert not [a for _, _, a in other.seen if a and JWT.reveal() in a], "cross-origin"

        case()


def test_whep_header_parsers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    @fuzz_settings(PARSE_CASES)
    @given(link=seeded(_link), retry_after=seeded(lambda rng: _either(rng, _RETRY_AFTER)))
    @example(link="<turn:[::1>; rel=ice-server", retry_after="Fri, 31 Dec 9999 23:59:59 +9999")
    @example(link=f'<turn:127.0.0.1>; rel="ice-server"; credential="{SECRETS[3]}"', retry_after="")
    def case(link: str, retry_after: str) -> None:
        note(f"input: {link!r}, {retry_after!r}")
        caplog.clear()
        try:
            servers = parse_link_ice_servers(link)
            delay = parse_retry_after(retry_after)
            error = None
        except Exception as exc:
            error = exc
        check_outcome(error, caplog.text)
        if error is None:
            assert delay is None or delay >= 0
            for server in servers:  # credentials never in a repr (they are Secrets)
                check_outcome(None, repr(server))
        CASES["whep-header-parse"] += 1

    case()
    assert CASES["whep-header-parse"] >= PARSE_CASES
