"""Fuzz: the emulator's own inputs (Authorization tokens and KSs, JSON and multipart bodies,
session ids, methods) against its HTTP server: it must answer 2xx or 4xx, never 5xx.

Requests are written byte by byte over a raw socket, so a header may hold anything a client
could send (bytes that are not UTF-8, a NUL, a lone CR). The token parsers also get cases in
process, with the header text as aiohttp decodes it (``surrogateescape``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from hypothesis import example, given, note

from avatar_rtc.api import ControlClient, SessionHandle
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator import jwt as emulator_jwt
from avatar_rtc.emulator.auth import KsAuthority, TokenAuthority, parse_authorization
from avatar_rtc.rtc import ice_restart
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.sdp_candidates import SDPFRAG_TYPE
from tests.support import LOOPBACK_ICE

from .conftest import fuzz_settings
from .planted import CASES, DEADLINE, assert_no_secret
from .raw_http import Request, send
from .seeds import real_seeds
from .strategies import (
    b64url,
    json_body,
    loopback_only,
    plant,
    raw_body,
    sdp_mutation,
    seeded,
    small_text,
    token_text,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # aiohttp warns about each broken form part it reads (the point of the exercise).
    pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionHeader"),
]

REQUEST_CASES = 1500
PARSE_CASES = 2000
OFFER_CASES = 300
PATCH_CASES = 300
STATUSES: Counter[int] = Counter()  # of the WHEP POSTs: the fuzz reaches both outcomes

ACTIONS = ("init-client", "say-text", "say-audio", "interrupt", "keep-alive", "end")
_CATALOG = {"filter": {"typeEqual": "Visual"}, "pager": {"offset": 0, "limit": 10}}
BODIES: dict[str, dict[str, Any]] = {
    "create": {"visualConfig": {"id": "av-1"}, "voiceConfig": {"id": "vo-1", "speed": 1.0}},
    "say-text": {"text": "Hello.", "turnId": "turn-1", "isFinal": True},
    "catalog": {**_CATALOG, "orderBy": "-createdAt"},
}
_SCHEMES = ("KS", "ks", "Bearer", "bearer", "BEARER", "", "Basic", "KS\t", "Bearer  ")
_CONTENT_TYPES = (
    b"application/json", b"text/plain", b"multipart/form-data; boundary=XyZ",
    b"multipart/form-data", b"application/json; charset=bogus", b"\xff\xfe",
)  # fmt: skip


@dataclass
class Known:
    """What a case may reuse: the emulator's KSs and live sessions' ids and tokens."""

    ks: list[str]
    sessions: list[tuple[str, str]]


def _multipart(rng: random.Random) -> bytes:
    """A say-audio form, whole or broken."""
    fields = [
        b'--XyZ\r\nContent-Disposition: form-data; name="turnId"\r\n\r\n'
        + small_text(rng).encode("utf-8", "surrogatepass") + b"\r\n",
        b'--XyZ\r\nContent-Disposition: form-data; name="duration"\r\n\r\n'
        + rng.choice((b"1.5", b"0", b"-1", b"nan", b"1e999", b"x")) + b"\r\n",
        b'--XyZ\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + rng.randbytes(rng.randint(0, 64)) + b"\r\n",
    ]  # fmt: skip
    rng.shuffle(fields)
    body = b"".join(fields[: rng.randint(0, 3)]) + b"--XyZ--\r\n"
    return body[: rng.randint(0, len(body))] if rng.random() < 0.3 else body


def _request(known: Known) -> Callable[[random.Random], Request]:
    tokens = token_text([token for _, token in known.sessions] + known.ks)

    def build(rng: random.Random) -> Request:
        endpoint = rng.choice(("create", "catalog", *ACTIONS, *ACTIONS))
        session_id, token = rng.choice(known.sessions)
        if endpoint in ("create", "catalog"):
            path = "/v1/catalog-item/list" if endpoint == "catalog" else "/v1/avatar-session"
            path += rng.choice(("/create", "")) if endpoint == "create" else ""
            valid = f"KS {known.ks[0]}"
        else:
            session = session_id if rng.random() < 0.8 else small_text(rng)
            path = f"/v1/avatar-session/{quote(session, safe='')}/{endpoint}"
            valid = f"Bearer {token}"
        pick = rng.random()  # half the cases get past the auth check, to reach the body
        if pick < 0.5:
            authorization: bytes | None = valid.encode()
        elif pick < 0.55:
            authorization = None
        elif pick < 0.6:
            authorization = rng.randbytes(rng.randint(0, 40))  # not even text
        else:
            text = f"{rng.choice(_SCHEMES)} {tokens(rng)}"
            authorization = text.encode("utf-8", "surrogatepass")
        if endpoint == "say-audio" and rng.random() < 0.7:
            content_type, body = b"multipart/form-data; boundary=XyZ", _multipart(rng)
        else:
            content_type = rng.choice(_CONTENT_TYPES)
            body = json_body(BODIES.get(endpoint, {}))(rng) if rng.random() < 0.9 else b""
        method = "POST" if rng.random() < 0.9 else rng.choice(("GET", "PUT", "DELETE", "PATCH"))
        return Request(method, path, authorization, content_type, body)

    return build


async def _live_sessions(emulator: Emulator, count: int) -> list[tuple[str, str]]:
    async with ControlClient(emulator.api_url, emulator.ks) as client:
        handles: list[SessionHandle] = [await client.create("av-1") for _ in range(count)]
    return [(h.session_id, h.token.reveal()) for h in handles]


def test_emulator_answers_4xx_never_5xx(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with asyncio.Runner() as runner:
        emulator = Emulator(media_enabled=False)
        runner.run(emulator.start())
        known = Known([emulator.ks, emulator.non_admin_ks], runner.run(_live_sessions(emulator, 6)))

        def admin(path: str, body: bytes) -> Request:
            return Request("POST", path, f"KS {known.ks[0]}".encode(), b"application/json", body)

        @fuzz_settings(REQUEST_CASES)
        @given(request=seeded(_request(known)))
        @example(Request("POST", "/v1/avatar-session/create", b"KS \xff\xfe", b"x", b"{}"))
        @example(admin("/v1/catalog-item/list", b'{"pager": {"offset": 1e999}}'))
        @example(admin("/v1/avatar-session/create", b"[" * 100_000))  # too deep for json
        @example(  # aiohttp's parser logs a bad request's bytes: the KS in them is masked
            Request("POST", "/v1/catalog-item/list", f"KS {known.ks[0]}\x0b".encode())
        )
        @example(  # a form part with a broken header line
            Request("POST", f"/v1/avatar-session/{known.sessions[0][0]}/say-audio",
                    f"Bearer {known.sessions[0][1]}".encode(),
                    b"multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Type\r\n\r\n")
        )  # fmt: skip
        @example(  # multipart without a boundary
            Request("POST", f"/v1/avatar-session/{known.sessions[0][0]}/say-audio",
                    f"Bearer {known.sessions[0][1]}".encode(), b"multipart/form-data", b"{}")
        )  # fmt: skip
        def case(request: Request) -> None:
            note(f"input: {request!r}")
            caplog.clear()
            status = runner.run(asyncio.wait_for(send(emulator.port, request), DEADLINE))
            assert 200 <= status < 500 or status == 0, f"HTTP {status}"
            ours = [r for r in caplog.records if r.name.startswith("avatar_rtc")]
            errors = [r.getMessage() for r in ours if r.levelno >= logging.ERROR]
            assert not errors, errors
            assert_no_secret(caplog.text, "the emulator's logs")
            CASES["emulator-http"] += 1
            if CASES["emulator-http"] % 25 == 0:  # cases end sessions: keep live ones at hand
                known.sessions[:] = runner.run(_live_sessions(emulator, 6))

        try:
            case()
        finally:
            runner.run(emulator.stop())
    assert CASES["emulator-http"] >= REQUEST_CASES


def test_emulator_whep_answers_offers_4xx_never_5xx(caplog: pytest.LogCaptureFixture) -> None:
    """WHEP offers mutated from ours, and bodies that are not SDP or not UTF-8, against the
    emulator's WHEP endpoint (media on). A viewer it accepts is DELETEd at once: one viewer
    at a time per session."""
    caplog.set_level(logging.INFO)
    with asyncio.Runner() as runner:
        seeds = runner.run(real_seeds())
        emulator = Emulator()
        runner.run(emulator.start())
        path = runner.run(_whep_path(emulator))
        mutated = sdp_mutation([seeds.client_offer])
        # A candidate port no socket can send to (aioice then fails every check, at ERROR).
        huge_port = re.sub(r"(a=candidate:(?:\S+ ){5})\d+", r"\g<1>99999", seeds.client_offer)

        def body(rng: random.Random) -> bytes:
            if rng.random() < 0.15:
                return raw_body(rng)
            return loopback_only(mutated(rng)).encode("utf-8")

        @fuzz_settings(OFFER_CASES)
        @given(offer=seeded(body))
        @example(b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:\xc3(\r\n")  # not UTF-8
        @example(huge_port.encode())
        def case(offer: bytes) -> None:
            note(f"input: {offer!r}")
            caplog.clear()
            status = runner.run(asyncio.wait_for(_offer(emulator, path, offer), DEADLINE))
            assert 200 <= status < 500, f"HTTP {status}"
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert not errors, errors
            CASES["emulator-whep"] += 1

        try:
            case()
        finally:
            runner.run(emulator.stop())
    assert CASES["emulator-whep"] >= OFFER_CASES
    assert STATUSES[201] and STATUSES[400], STATUSES  # offers taken and refused, both


def test_emulator_whep_patch_answers_4xx_never_5xx(caplog: pytest.LogCaptureFixture) -> None:
    """ICE restart and trickle PATCHes (``Emulator(ice_restart=True)``) to a live viewer:
    sdpfrags mutated from a real restart fragment of ours, bodies that are not sdpfrags or not
    UTF-8, any If-Match and Content-Type. A restart it takes runs checks that may fail (logged
    at INFO); the next case restarts again."""
    caplog.set_level(logging.INFO)
    with asyncio.Runner() as runner:
        emulator = Emulator(ice_restart=True)
        runner.run(emulator.start())
        connection, seed = runner.run(_restart_seed(emulator))
        url, etag = connection.whep.location or "", connection.whep.etag or ""
        mutated = sdp_mutation([seed])
        others = ("application/sdp", "text/plain", "")

        def request(rng: random.Random) -> tuple[bytes, str, str | None]:
            body = raw_body(rng) if rng.random() < 0.15 else loopback_only(mutated(rng)).encode()
            text = "".join(c for c in small_text(rng) if " " <= c <= "~")  # a header's
            if_match = rng.choice(["*", '"*"', '"*"', etag, '"stale"', text, None])
            content_type = SDPFRAG_TYPE if rng.random() < 0.8 else rng.choice(others)
            return body, content_type, if_match

        @fuzz_settings(PATCH_CASES)
        @given(patch=seeded(request))
        @example((seed.encode(), SDPFRAG_TYPE, '"*"'))
        @example((b"a=ice-ufrag:\xc3(\r\n", SDPFRAG_TYPE, "*"))  # not UTF-8
        def case(patch: tuple[bytes, str, str | None]) -> None:
            note(f"input: {patch!r}")
            caplog.clear()
            status = runner.run(asyncio.wait_for(_patch(url, *patch), DEADLINE))
            assert 200 <= status < 500, f"HTTP {status}"
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert not errors, errors
            CASES["emulator-whep-patch"] += 1

        try:
            case()
        finally:
            runner.run(connection.close())
            runner.run(emulator.stop())
    print(f"PATCH statuses: {dict(PATCH_STATUSES)}")
    assert CASES["emulator-whep-patch"] >= PATCH_CASES
    assert PATCH_STATUSES[200] and PATCH_STATUSES[400], PATCH_STATUSES  # restarts, refusals


PATCH_STATUSES: Counter[int] = Counter()


async def _restart_seed(emulator: Emulator) -> tuple[MediaConnection, str]:
    """A live viewer (our connection to it) and a real restart sdpfrag of ours for it."""
    async with ControlClient(emulator.api_url, emulator.ks) as client:
        config = await client.init_client(await client.create("av-1"))
    connection = MediaConnection(config.whep_url, ice=LOOPBACK_ICE)
    await connection.connect()
    ice = connection._ice_connection
    assert ice is not None and connection.whep.location and connection.whep.etag
    return connection, ice_restart.fragment(ice, "0")


async def _patch(url: str, body: bytes, content_type: str, if_match: str | None) -> int:
    headers = {"Content-Type": content_type} if content_type else {}
    if if_match is not None:
        headers["If-Match"] = if_match
    async with aiohttp.ClientSession() as http, http.patch(url, data=body, headers=headers) as r:
        await r.read()
        status = r.status
    PATCH_STATUSES[status] += 1
    return status


async def _whep_path(emulator: Emulator) -> str:
    async with ControlClient(emulator.api_url, emulator.ks) as client:
        config = await client.init_client(await client.create("av-1"))
    return urlsplit(config.whep_url).path


async def _offer(emulator: Emulator, path: str, offer: bytes) -> int:
    """POST the offer; DELETE the viewer it made, if any. The POST's status."""
    base = f"http://127.0.0.1:{emulator.port}"
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/sdp"}
        async with http.post(base + path, data=offer, headers=headers) as response:
            status, location = response.status, response.headers.get("Location")
            await response.read()
        if status == 201 and location:
            async with http.delete(base + location) as deleted:
                # 404: the viewer is gone already (its ICE failed at once on a fuzzed offer).
                assert deleted.status in (204, 404)
    STATUSES[status] += 1
    return status


def test_emulator_token_parsers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ks = KsAuthority()
    tokens = TokenAuthority(ttl=600.0)
    valid = [tokens.issue("sess-1", "tid-1"), ks.admin_ks, ks.non_admin_ks]
    build_token = token_text(valid)

    def header(rng: random.Random) -> str:
        """An Authorization header as aiohttp hands it over: bytes that are not UTF-8
        come as lone surrogates."""
        raw = f"{rng.choice(_SCHEMES)} {build_token(rng)}".encode("utf-8", "surrogatepass")
        if rng.random() < 0.2:
            raw += rng.randbytes(rng.randint(1, 8))
        return plant(rng, raw.decode("utf-8", "surrogateescape"))

    @fuzz_settings(PARSE_CASES)
    @given(value=seeded(header))
    @example("KS \udcff\udcfe")  # not UTF-8: a KS compared as bytes must not raise
    @example("Bearer " + emulator_jwt.encode({"exp": 1e999}, b"k"))
    @example("Bearer " + b64url(b"[" * 5000) + ".e30.x")  # RecursionError in json
    def case(value: str) -> None:
        note(f"input: {value!r}")
        parse_authorization(value)
        ks.check(value)
        tokens.verify(value)
        with contextlib.suppress(emulator_jwt.JwtError):
            emulator_jwt.decode(value.partition(" ")[2], b"k")
        CASES["emulator-parse"] += 1

    case()
    assert CASES["emulator-parse"] >= PARSE_CASES
