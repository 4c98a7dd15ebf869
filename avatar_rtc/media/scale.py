"""Colour conversion and resize of a decoded frame, on the calling thread only.

PyAV's ``reformat`` lets swscale pick its own thread count; on a 512x512 frame its helper
threads cost about twice the CPU of doing the work on the caller's thread (measured: 161 vs
77 µs of CPU per frame to rgb24), and our callers already run off the event loop, one frame at
a time. Every conversion in the package goes through :func:`scale` for that reason.
"""

from __future__ import annotations

from typing import Literal

import av

__all__ = ["scale"]

Interpolation = Literal["BILINEAR", "AREA", "BICUBIC", "POINT", "FAST_BILINEAR"]


def scale(
    frame: av.VideoFrame,
    *,
    format: str,
    width: int | None = None,
    height: int | None = None,
    interpolation: Interpolation | None = None,
) -> av.VideoFrame:
    """``frame`` in ``format`` at ``width`` x ``height`` (default: its own size), one thread."""
    return frame.reformat(
        width=width, height=height, format=format, interpolation=interpolation, threads=1
    )
