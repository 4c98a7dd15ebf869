"""Colour conversion and resize of a decoded frame, on the calling thread only.

PyAV's ``reformat`` lets swscale pick its own thread count; on a 512x512 frame its helper
threads cost about twice the CPU of doing the work on the caller's thread (measured: 161 vs
77 µs of CPU per frame to rgb24), and our callers already run off the event loop, one frame at
a time. Every conversion in the package goes through :func:`scale` for that reason.

``VideoFrame.reformat`` also builds a new swscale context for every frame it is called on (the
context lives on the frame). Each thread here keeps one ``VideoReformatter`` instead, which
swscale re-initialises only when the sizes or formats change: 512x512 yuv420p -> rgb24 went
from 103-110 to 93-97 µs a frame (``scripts/bench_media_floor.py``, three pairs of runs).
"""

from __future__ import annotations

import threading
from typing import Literal

import av
from av.video.reformatter import VideoReformatter

__all__ = ["scale"]

Interpolation = Literal["BILINEAR", "AREA", "BICUBIC", "POINT", "FAST_BILINEAR"]

# One reformatter per thread: a swscale context is not safe to share between threads.
_local = threading.local()


def scale(
    frame: av.VideoFrame,
    *,
    format: str,
    width: int | None = None,
    height: int | None = None,
    interpolation: Interpolation | None = None,
) -> av.VideoFrame:
    """``frame`` in ``format`` at ``width`` x ``height`` (default: its own size), one thread."""
    reformatter: VideoReformatter | None = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter.reformat(
        frame, width=width, height=height, format=format, interpolation=interpolation, threads=1
    )
