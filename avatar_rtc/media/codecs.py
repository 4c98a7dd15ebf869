"""The FFmpeg decoder of each codec we receive: one factory for the decoder threads
(:mod:`.decoder`) and the recorder's transcoder (``record/encoder.py``)."""

from __future__ import annotations

from typing import Any

import av

__all__ = ["create_decoder"]

# Our codec names (SDP, any case) -> FFmpeg decoders. FFmpeg's native vp8 is faster than the
# libvpx one aiortc uses.
_VIDEO_DECODERS = {"h264": "h264", "vp8": "vp8", "vp9": "vp9"}


def create_decoder(codec: str, thread_count: int = 1) -> Any:
    """A fresh decoder context for ``codec`` (``"H264"``, ``"VP8"``, ``"VP9"``, ``"opus"``).

    Video uses slice threading on ``thread_count`` threads: frame threading would delay every
    frame by (threads - 1) frames, and automatic thread counts have caused CPU blow-ups. Opus
    decodes to 48 kHz stereo s16. Raises ``ValueError`` for any other codec.
    """
    name = codec.lower()
    ctx: Any
    if name == "opus":
        ctx = av.CodecContext.create("libopus", "r")
        ctx.format = "s16"
        ctx.layout = "stereo"
        ctx.sample_rate = 48000
        return ctx
    decoder = _VIDEO_DECODERS.get(name)
    if decoder is None:
        raise ValueError(f"no decoder for codec {codec!r}")
    ctx = av.CodecContext.create(decoder, "r")
    ctx.thread_type = "SLICE"
    ctx.thread_count = thread_count
    return ctx
