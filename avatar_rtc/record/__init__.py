"""Step 4 of the data path: recording to a file.

``Recorder(path)`` muxes the received compressed frames without decoding them;
``Recorder(path, RecordOptions(mode="encode"))`` re-encodes decoded frames. Both write from a
thread of their own.
"""

from __future__ import annotations

from .errors import RecordError
from .options import EncodeOptions, RecordMode, RecordOptions
from .recorder import FrameSource, Recorder
from .stats import RecorderStats, StreamAction, StreamRoute, StreamStats

__all__ = [
    "EncodeOptions",
    "FrameSource",
    "RecordError",
    "RecordMode",
    "RecordOptions",
    "Recorder",
    "RecorderStats",
    "StreamAction",
    "StreamRoute",
    "StreamStats",
]
