"""Fuzz: Control API answers (status, headers, JSON bodies with wrong types, missing fields,
huge and non-UTF-8 values) against the Control API client, over loopback HTTP.

Each case calls one endpoint of ``ControlClient`` against a server that answers the fuzzed
response. The documented success is the call's typed result (whose TURN config must then
give ICE server URLs the media layer can parse); anything else must be a typed error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given

from avatar_rtc.api import ClientConfig, ControlClient, RetryPolicy, SessionHandle
from avatar_rtc.rtc.ice_servers import ice_servers_from_turn, parse_ice_url

from .conftest import fuzz_settings
from .planted import JWT, KS, SECRETS, TURN_CREDENTIAL, TURN_USERNAME
from .runner import http_area
from .server import Canned
from .strategies import header_text, json_body, seeded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CALL_CASES = 2000

# What the live service answers, per endpoint (the shapes to break).
REAL_ANSWERS: dict[str, dict[str, Any]] = {
    "create": {"success": True, "sessionId": "3f1c6a0e-sess", "token": JWT.reveal()},
    "init_client": {
        "success": True,
        "whepUrl": "http://127.0.0.1:9/v1/whep/3f1c6a0e-sess",
        "turn": {
            "url": "turn.avatar.example",
            "username": TURN_USERNAME.reveal(),
            "credential": TURN_CREDENTIAL.reveal(),
        },
    },
    "catalog": {
        "objects": [
            {"itemId": "av-1", "type": "Visual", "attributes": {"visual": {"name": "Ava"}}},
            {"itemId": "vo-1", "type": "Voice", "name": "Vic"},
        ],
        "totalCount": 2,
    },
    "error": {"success": False, "error": "Invalid or expired token"},
}
OPS = ("create", "init_client", "keep_alive", "end", "say_text", "interrupt", "catalog",
       "say_audio")  # fmt: skip
_STATUSES = [200] * 10 + [201, 204, 302, 307, 400, 401, 403, 404, 409, 410, 413, 429, 500, 502,
                          503, 504, 599]  # fmt: skip
_CONTENT_TYPES = ("application/json", "application/json; charset=bogus", "text/html",
                  "application/json; charset=latin-1", "")  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One case: the endpoint called and the answer it gets."""

    op: str
    answer: Canned


def _call(rng: random.Random) -> Call:
    op = rng.choice(OPS)
    shape = REAL_ANSWERS.get(op, {"success": True})
    if rng.random() < 0.2:
        shape = REAL_ANSWERS["error"]
    headers: dict[str, str] = {}
    if rng.random() < 0.7:
        headers["Content-Type"] = rng.choice(_CONTENT_TYPES)
    if rng.random() < 0.3:
        headers["Retry-After"] = header_text(rng)
    status = rng.choice(_STATUSES)
    if 300 <= status < 400 and rng.random() < 0.8:
        headers["Location"] = rng.choice(("/v1/avatar-session/moved", "", "http://[", "?x"))
    return Call(op, Canned(status, headers, json_body(shape)(rng)))


async def _invoke(client: ControlClient, op: str) -> object:
    handle = SessionHandle("3f1c6a0e-sess", JWT)
    if op == "create":
        return await client.create("av-1", "vo-1")
    if op == "init_client":
        config = await client.init_client(handle)
        _use_turn(config)
        return config
    if op == "keep_alive":
        await client.keep_alive(handle)
        return None
    if op == "end":
        return await client.end(handle)
    if op == "say_text":
        return await client.say_text(handle, "Hello there.")
    if op == "interrupt":
        await client.interrupt(handle)
        return None
    if op == "catalog":
        return await client.list_catalog("Visual")
    return await client.say_audio(handle, b"RIFF....WAVE", duration=1.0, content_type="audio/wav")


def _use_turn(config: ClientConfig) -> None:
    """What the media layer does with the TURN object: its URLs must parse."""
    if config.turn is not None:
        for server in ice_servers_from_turn(config.turn):
            parse_ice_url(server.url)


def test_control_api_answers(caplog: pytest.LogCaptureFixture) -> None:
    with http_area(caplog, "control-api", CALL_CASES) as area:
        server = area.server

        async def call(op: str) -> object:
            async with ControlClient(
                server.base + "/v1/avatar-session", KS, retry=RetryPolicy(max_attempts=1)
            ) as client:
                return await _invoke(client, op)

        @fuzz_settings(CALL_CASES)
        @given(case=seeded(_call))
        @example(Call("init_client", Canned(200, {}, b'{"whepUrl": "http://x/", "turn": {}}')))
        @example(  # TURN host "[": IceServer URLs that do not parse
            Call("init_client", Canned(200, {}, b'{"whepUrl": "http://x", "turn": {"url": "["}}'))
        )
        @example(Call("create", Canned(200, {}, b"[" * 100_000)))  # RecursionError in json
        @example(  # a token that cannot go in a header
            Call("create", Canned(200, {}, b'{"sessionId": "s", "token": "a\\nb"}'))
        )
        @example(  # a logger created after install_log_redaction(): a secret logged as is
            Call(
                "create", Canned(200, {}, f'{{"sessionId": "{SECRETS[3]}", "token": "t"}}'.encode())
            )
        )
        @example(  # an excerpt cut inside a secret
            Call("end", Canned(500, {}, ("x" * 190 + SECRETS[0]).encode()))
        )
        def case(case: Call) -> None:
            server.answer(case.answer)
            area.run(case, lambda: call(case.op))

        case()
