"""Step 4 of the data path: recording to a file.

``Recorder(path)`` muxes the received compressed frames without decoding them;
``Recorder(path, RecordOptions(mode="encode"))`` re-encodes decoded frames. Both write from a
thread of their own.
"""

from __future__ import annotations

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
