"""The video codecs we can receive: a module of its own, so that the session options and the
command line read the list without loading aiortc."""

from __future__ import annotations

__all__ = ["RECEIVABLE_VIDEO_CODECS"]

# What the receive pipeline depacketizes and decodes, in our order of preference.
RECEIVABLE_VIDEO_CODECS = ("H264", "VP8")
