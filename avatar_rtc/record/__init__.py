"""Step 4 of the data path: recording to a file.

``Recorder(path)`` muxes the received compressed frames without decoding them;
``Recorder(path, RecordOptions(mode="encode"))`` re-encodes decoded frames. Both write from a
thread of their own.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .errors import RecordError
from .options import EncodeOptions, RecordMode, RecordOptions
from .recorder import FrameSource, Recorder
from .stats import RecordedStreamStats, RecorderStats, StreamAction, StreamRoute

__all__ = [
    "EncodeOptions",
    "FrameSource",
    "RecordError",
    "RecordMode",
    "RecordOptions",
    "RecordedStreamStats",
    "Recorder",
    "RecorderStats",
    "StreamAction",
    "StreamRoute",
]


if not TYPE_CHECKING:  # (a type checker keeps telling a misspelt name, and the old one)

    def __getattr__(name: str) -> Any:
        # 0.1.0 named RecordedStreamStats "StreamStats" (avatar_rtc.StreamStats: a stream's).
        if name == "StreamStats":
            warnings.warn(
                "avatar_rtc.record.StreamStats is now RecordedStreamStats",
                DeprecationWarning,
                stacklevel=2,
            )
            return RecordedStreamStats
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
