"""Fuzz: the fast path's RTP parse (``rtc.rtp_parse``) against aiortc's ``RtpPacket.parse``.

Packets built from a valid header with random flags, CSRCs, header-extension blocks (one-byte
and two-byte profiles, with abs-send-time among random extensions, truncations), padding and
payloads, then byte-flipped. Whatever aiortc parses, ours parses the same (every field, and
abs-send-time of the extensions); whatever aiortc rejects with ``ValueError``, ours rejects
with ``ValueError``. Two differences, both extensions ours does not read: an abs-send-time
value that is not 3 bytes fails aiortc's parse with ``struct.error``, a MID that is not UTF-8
with ``UnicodeDecodeError``; ours ignores both.
"""

from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import example, given, note
from hypothesis import strategies as st

from avatar_rtc.rtc.rtp_parse import ABS_SEND_TIME_URI, parse_rtp

from .conftest import fuzz_settings
from .planted import CASES

pytestmark = pytest.mark.slow

PARSE_CASES = 3000
ABS_ID = 3


def _map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=ABS_ID, uri=ABS_SEND_TIME_URI),
    ]))  # fmt: skip
    return extensions


_one_byte_element = st.tuples(st.integers(0, 15), st.binary(min_size=1, max_size=16)).map(
    lambda e: bytes([(e[0] << 4) | (len(e[1]) - 1)]) + e[1]
)
_two_byte_element = st.tuples(st.integers(0, 255), st.binary(max_size=20)).map(
    lambda e: bytes([e[0], len(e[1])]) + e[1]
)
_abs = st.binary(min_size=3, max_size=3).map(lambda v: bytes([(ABS_ID << 4) | 2]) + v)


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    cc = draw(st.integers(0, 3))
    extension = b""
    if draw(st.booleans()):
        profile = draw(st.sampled_from([0xBEDE, 0x1000, 0x1001, 0x1234]))
        element = _two_byte_element if profile & 0xFFF0 == 0x1000 else _one_byte_element
        parts = draw(st.lists(st.one_of(element, _abs, st.just(b"\x00")), max_size=5))
        block = b"".join(parts)
        block += b"\x00" * (-len(block) % 4)
        words = len(block) // 4 + draw(st.sampled_from([0, 0, 0, 1, -1]))
        extension = struct.pack("!HH", profile, max(0, words) & 0xFFFF) + block
    padding = draw(st.integers(0, 4)) if draw(st.booleans()) else 0
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | cc
    header = struct.pack(
        "!BBHII",
        first,
        draw(st.integers(0, 255)),
        draw(st.integers(0, 65535)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
    )
    data = header + b"\x01\x02\x03\x04" * cc + extension + draw(st.binary(max_size=40))
    if padding:
        data += b"\x00" * (padding - 1) + bytes([padding])
    flips = draw(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=2))
    for at, value in flips:
        if at < len(data):
            data = data[:at] + bytes([value]) + data[at + 1 :]
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data  # fmt: skip


def _fields(packet: RtpPacket) -> tuple[object, ...]:
    return (packet.version, packet.marker, packet.payload_type, packet.sequence_number,
            packet.timestamp, packet.ssrc, packet.csrc, packet.padding_size, packet.payload,
            packet.extensions.abs_send_time)  # fmt: skip


def test_rtp_parse_is_aiortcs() -> None:
    extensions = _map()

    @fuzz_settings(PARSE_CASES)
    @given(data=packets())
    @example(data=b"\x80\x60\x00\x01" + b"\x00" * 8)  # the smallest packet
    @example(data=b"\x90\x60\x00\x01" + b"\x00" * 8 + b"\xbe\xde\x00\x01\x32\x01\x02\x03")
    def case(data: bytes) -> None:
        note(f"input: {data!r}")
        try:
            theirs: RtpPacket | None = RtpPacket.parse(data, extensions)
        except (struct.error, UnicodeDecodeError):  # (see the module docstring)
            CASES["rtp-parse"] += 1
            return
        except ValueError:
            theirs = None
        try:
            ours: RtpPacket | None = parse_rtp(data, ABS_ID)
        except ValueError:
            ours = None
        assert (theirs is None) == (ours is None), (theirs, ours)
        if theirs is not None and ours is not None:
            assert _fields(ours) == _fields(theirs)
        CASES["rtp-parse"] += 1

    case()
    assert CASES["rtp-parse"] >= PARSE_CASES


def test_without_the_extension_id_nothing_is_read_of_the_extensions() -> None:
    data = b"\x90\x60\x00\x01" + b"\x00" * 8 + b"\xbe\xde\x00\x01\x32\x01\x02\x03" + b"payload"
    assert parse_rtp(data, ABS_ID).extensions.abs_send_time == 0x010203
    packet = parse_rtp(data, None)
    assert packet.extensions.abs_send_time is None and packet.payload == b"payload"
