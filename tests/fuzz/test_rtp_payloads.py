"""Fuzz: video RTP payloads, as the receive path reads them (the H264 helpers on top of
aiortc's depayloaders). Malformed payloads may raise ``ValueError`` (the jitter buffer drops
the packet then) and nothing else; the H264 helpers never raise."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from avatar_rtc.rtc import h264
from avatar_rtc.rtc.jitter_buffer import parse_video_payload

from .conftest import fuzz_settings
from .planted import CASES

pytestmark = pytest.mark.slow

PAYLOAD_CASES = 1500

# Payloads shaped like H264 packetization: a NAL header byte of each kind, then anything.
_nal_headers = st.sampled_from([bytes([kind]) for kind in (1, 5, 7, 8, 9, 24, 28, 0x7C, 0x78)])
payloads = st.one_of(st.binary(max_size=64), st.tuples(_nal_headers, st.binary(max_size=64)).map(
    lambda parts: parts[0] + parts[1]
))  # fmt: skip


def test_rtp_payloads() -> None:
    sprops = st.sampled_from(("Z0IAH5WoFAFuQA==,aM48gA==", "Z0é=", "!!!", ""))

    @fuzz_settings(PAYLOAD_CASES)
    @given(payload=payloads, sprop=sprops)
    @example(payload=b"", sprop="")  # IndexError on an empty payload
    @example(payload=b"\x09\xf0", sprop="Z0é=")  # ValueError from base64 on non-ASCII
    def case(payload: bytes, sprop: str) -> None:
        note(f"input: {payload!r}, {sprop!r}")
        h264.carries_idr(payload)
        h264.starts_access_unit(payload)
        h264.has_parameter_sets(payload)
        h264.with_parameter_sets(payload, sprop)
        for codec in ("H264", "VP8", "VP9"):
            with contextlib.suppress(ValueError):  # documented: the packet is dropped
                parse_video_payload(codec, payload)
        CASES["rtp-payload"] += 1

    case()
    assert CASES["rtp-payload"] >= PAYLOAD_CASES
