"""Output streams for already-encoded media, without opening any encoder.

PyAV opens an encoder for every stream made with ``add_stream`` when the header is written, and
that encoder would overwrite the extradata we need (SPS/PPS, OpusHead). A stream made with
``add_stream_from_template`` is never opened, so we demux a tiny in-memory file built from the
first received keyframe / Opus packet and use its stream as the template: FFmpeg itself parses
the SPS (size, profile) and the muxer later turns Annex-B extradata into avcC where needed.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import av.container
import av.stream

from .bitstream import opus_head

__all__ = ["add_copy_stream"]

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(payload: bytes, seq: int, granule: int, header_type: int) -> bytes:
    lacing = [255] * (len(payload) // 255) + [len(payload) % 255]
    head = struct.pack("<4sBBqIIIB", b"OggS", 0, header_type, granule, 1, seq, 0, len(lacing))
    page = head + bytes(lacing) + payload
    crc = _ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


def _opus_template_file(first_packet: bytes, channels: int) -> bytes:
    tags = b"OpusTags" + struct.pack("<I", 9) + b"avatarrtc" + struct.pack("<I", 0)
    return (
        _ogg_page(opus_head(channels), 0, 0, 0x02)
        + _ogg_page(tags, 1, 0, 0)
        + _ogg_page(first_packet, 2, 960, 0x04)
    )


def _ivf_template_file(keyframe: bytes, width: int, height: int) -> bytes:
    header = struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, b"VP80", width, height, 90000, 1, 1, 0)
    return header + struct.pack("<IQ", len(keyframe), 0) + keyframe


def _template_source(codec: str, sample: bytes, width: int, height: int) -> tuple[bytes, str]:
    if codec == "h264":
        return sample, "h264"
    if codec == "vp8":
        return _ivf_template_file(sample, width, height), "ivf"
    if codec == "opus":
        return _opus_template_file(sample, 2), "ogg"
    raise ValueError(f"no copy template for codec {codec!r}")


def add_copy_stream(
    container: av.container.OutputContainer,
    codec: str,
    sample: bytes,
    *,
    extradata: bytes | None = None,
    width: int = 0,
    height: int = 0,
) -> av.stream.Stream:
    """Add a stream for packets of ``codec`` ("h264", "vp8", "opus") to ``container``.

    ``sample`` is the first keyframe (video) or packet (audio); ``extradata`` overrides what
    FFmpeg found (H264: Annex-B SPS+PPS; Opus: OpusHead).
    """
    blob, fmt = _template_source(codec, sample, width, height)
    with av.open(io.BytesIO(blob), mode="r", format=fmt) as source:
        template = source.streams[0]
        stream = container.add_stream_from_template(template)
    ctx = stream.codec_context
    if codec == "opus":
        ctx.extradata = extradata if extradata is not None else opus_head(2)
        stream.time_base = AUDIO_TIME_BASE
    else:
        if extradata is not None:
            ctx.extradata = extradata
        stream.time_base = VIDEO_TIME_BASE
    return stream
