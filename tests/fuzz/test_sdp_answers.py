"""Fuzz: SDP answers (and counter-offers) mutated from real ones.

Two ways in, both ending with ``planted.check_outcome``:

- through ``MediaConnection.connect()`` itself, against a loopback WHEP server that answers
  the mutated SDP: normalization, codec negotiation and aiortc's ``setRemoteDescription``,
  whose ``ValueError`` (and any other refusal) must come out as our typed error. Reaching
  ``on_remote_description`` is the documented success (the case stops there: ICE with a
  fuzzed peer would only wait for the timeout);
- in process, for more cases per second: every parser the answer meets (candidates,
  trickle fragments, codecs, H264 parameter sets), which may raise nothing but our errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import pytest
from aiortc import sdp as aiortc_sdp
from aiortc.sdp import candidate_from_sdp
from hypothesis import example, given, note

from avatar_rtc.errors import AvatarRTCError
from avatar_rtc.rtc import codec_negotiation, h264, sdp_candidates
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.video_codecs import RECEIVABLE_VIDEO_CODECS
from tests.support import LOOPBACK_ICE

from .conftest import fuzz_settings
from .planted import CASES, JWT, check_outcome
from .runner import http_area
from .seeds import real_seeds
from .server import Canned
from .strategies import loopback_only, sdp_mutation, seeded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONNECT_CASES = 1500
PARSE_CASES = 2500

# Regression examples: each broke a parser before it was fixed (see the report of issue 10).
SESSION = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
SUPERSCRIPT_PORT = SESSION + "m=video ² UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
SUPERSCRIPT_PT = SESSION + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:² sprop-parameter-sets=Z0I=\r\n"
)
NON_ASCII_SPROP = SESSION + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 sprop-parameter-sets=Z0é=\r\n"
)
TCP_PORT_SUPERSCRIPT = SESSION + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n"
    "a=candidate:1 1 tcp 1 127.0.0.1 ² typ host tcptype passive\r\n"
)
BAD_RPORT = SESSION + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n"
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ relay raddr 0.0.0.0 rport x\r\n"
)
# int() quotes the first 200 characters of what it refused: a secret there is cut short.
CUT_BY_INT = SESSION + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n"
    f"a=ssrc:{'9' * 185}{JWT.reveal()} cname:x\r\n"
)
HUGE_PORT = SESSION + (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\n"
    "a=candidate:1 1 udp 1 127.0.0.1 99999 typ host\r\n"
)


class Applied(Exception):
    """The answer reached aiortc and was applied: the documented success."""


def _stop_when_applied(sdp: str) -> None:
    raise Applied


async def _connect(url: str) -> None:
    connection = MediaConnection(
        url, bearer=JWT, ice=LOOPBACK_ICE, on_remote_description=_stop_when_applied
    )
    try:
        await connection.connect()
    finally:
        assert connection.state == "closed"  # every exit path closes (and DELETEs)


def test_sdp_answers_through_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    with http_area(caplog, "sdp-connect", CONNECT_CASES) as area:
        seeds = area.runner.run(real_seeds())
        server = area.server
        url = server.base + "/whep"

        answer, offer = sdp_mutation(seeds.answers), sdp_mutation(seeds.offers)

        def build(rng: random.Random) -> tuple[str, bool]:
            """A mutated answer (201), one time in four a mutated counter-offer (406)."""
            counter_offer = rng.random() < 0.25
            return (offer if counter_offer else answer)(rng), counter_offer

        @fuzz_settings(CONNECT_CASES)
        @given(exchange=seeded(build))
        @example(exchange=(SUPERSCRIPT_PORT, False))
        @example(exchange=(SUPERSCRIPT_PT, False))
        @example(exchange=(BAD_RPORT, False))
        @example(exchange=(SUPERSCRIPT_PORT, True))
        @example(exchange=(CUT_BY_INT, False))
        def case(exchange: tuple[str, bool]) -> None:
            sdp, counter_offer = exchange
            server.answer(
                Canned(
                    406 if counter_offer else 201,
                    {"Content-Type": "application/sdp", "Location": "/whep/res/1"},
                    loopback_only(sdp).encode(),
                )
            )
            area.run(exchange, lambda: _connect(url), success=Applied)

        case()


def _parse_like_the_connection(sdp: str) -> None:
    """Every parser an answer meets on its way in; only our errors may come out."""
    found = sdp_candidates.normalize_answer(sdp)
    fragment = sdp_candidates.parse_sdpfrag(sdp)  # the same text as a trickle reply
    for value in (*found.candidates, *fragment.all_candidates()):
        # What aiortc and aioice will be handed: readable, and a port a socket can send to.
        assert 0 <= candidate_from_sdp(value).port <= 65535
    sdp_candidates.unpairable_addresses(found.candidates)
    sdp_candidates.local_sdpfrag(sdp)
    codec_negotiation.video_answer(found.sdp)
    for sprop in h264.sprop_by_payload_type(found.sdp).values():
        h264.with_parameter_sets(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x65\x88", sprop)
    try:
        codec_negotiation.check_answer(RECEIVABLE_VIDEO_CODECS, found.sdp)
    except AvatarRTCError:
        return
    with contextlib.suppress(Exception):  # the connection turns these into ConnectError
        aiortc_sdp.SessionDescription.parse(found.sdp)


def test_sdp_answers_in_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seeds = asyncio.run(real_seeds())

    @fuzz_settings(PARSE_CASES)
    @given(sdp=seeded(sdp_mutation(seeds.answers + seeds.offers)))
    @example(sdp=SUPERSCRIPT_PORT)
    @example(sdp=SUPERSCRIPT_PT)
    @example(sdp=NON_ASCII_SPROP)
    @example(sdp=TCP_PORT_SUPERSCRIPT)
    @example(sdp=BAD_RPORT)
    @example(sdp=HUGE_PORT)
    def case(sdp: str) -> None:
        note(f"input: {sdp!r}")
        caplog.clear()
        try:
            _parse_like_the_connection(sdp)
            error = None
        except Exception as exc:
            error = exc
        check_outcome(error, caplog.text)
        CASES["sdp-parse"] += 1

    case()
    assert CASES["sdp-parse"] >= PARSE_CASES
