"""Small parsers and builders for the compressed formats the copy path muxes.

Only what the recorder needs: H264 Annex-B NAL scanning (parameter sets), VP8 keyframe size,
Opus packet duration (RFC 6716 TOC byte) and the Opus identification header (RFC 7845).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "H264_PPS",
    "H264_SPS",
    "h264_nal_types",
    "h264_parameter_sets",
    "iter_annexb_nals",
    "opus_head",
    "opus_packet_samples",
    "vp8_keyframe_size",
]

H264_SPS = 7
H264_PPS = 8


def iter_annexb_nals(data: bytes) -> Iterator[bytes]:
    """Yield the NAL units (without start codes) of an Annex-B buffer."""
    n = len(data)
    start = data.find(b"\x00\x00\x01")
    while 0 <= start < n:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = n if nxt < 0 else nxt
        # A 4-byte start code leaves a zero at the end of the previous NAL: strip it.
        if nxt > begin and data[nxt - 1] == 0:
            end -= 1
        if end > begin:
            yield data[begin:end]
        start = nxt


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex-B access unit, in order."""
    return [nal[0] & 0x1F for nal in iter_annexb_nals(data)]


def h264_parameter_sets(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """(SPS NALs, PPS NALs) found in an Annex-B access unit."""
    sps: list[bytes] = []
    pps: list[bytes] = []
    for nal in iter_annexb_nals(data):
        kind = nal[0] & 0x1F
        if kind == H264_SPS:
            sps.append(nal)
        elif kind == H264_PPS:
            pps.append(nal)
    return sps, pps


def annexb(nals: list[bytes]) -> bytes:
    """Join NAL units with 4-byte start codes."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 keyframe (RFC 6386 §9.1), None for an interframe or junk."""
    if len(data) < 10 or data[0] & 0x01:  # bit 0 of the frame tag: 0 = keyframe
        return None
    if data[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


# Frame duration in 48 kHz samples for each of the 32 TOC configurations (RFC 6716 §3.1).
_OPUS_FRAME_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # Hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_packet_samples(packet: bytes) -> int | None:
    """Duration of an Opus packet in 48 kHz samples, None when the packet is malformed."""
    if not packet:
        return None
    toc = packet[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            return None
        frames = packet[1] & 0x3F
    total = frames * per_frame
    return total if 0 < total <= 5760 else None  # a packet is at most 120 ms


def opus_head(channels: int = 2, pre_skip: int = 0, input_rate: int = 48000) -> bytes:
    """The 19-byte OpusHead identification header (RFC 7845 §5.1), channel mapping family 0.

    WebRTC carries no pre-skip: we write 0 so the file plays the packets exactly as received
    (a browser plays them the same way).
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)
