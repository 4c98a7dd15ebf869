"""Media QA: frame rates, freezes, black, loudness, silences, speech, dropouts and lip sync.

Analysers take frames as they come (a live session or a file), each with its presentation
time: :class:`MediaQa` runs them all and builds a :class:`QaReport` (``to_dict()``: the JSON of
``avatar-rtc qa``); :func:`analyse_file` does it for a recorded file, :class:`LiveQa` for a
live session (plus its turns, start-up and network); :func:`plot_report` draws its timeline.
Needs the ``qa`` extra (OpenCV for the face, SciPy for the loudness filters, matplotlib for the
plot).
"""

from __future__ import annotations

try:  # the qa extra: say so, rather than a bare "No module named 'scipy'"
    import cv2  # noqa: F401
    import scipy  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"avatar_rtc.qa needs the qa extra: pip install 'avatar-rtc[qa]' ({exc})"
    ) from exc

from .analysis import MediaQa, analysis_size
from .audio import AudioAnalyser, AudioResult
from .file import NoMediaInFileError, analyse_file
from .lipsync import LipSyncAnalyser, LipSyncResult, SyncBands, sync_verdict
from .live import LiveQa
from .plot import plot_report
from .report import Check, LiveResult, QaReport
from .thresholds import Thresholds, load_thresholds
from .turns import Say, Turn, latency_percentiles
from .video import VideoAnalyser, VideoResult

__all__ = [
    "AudioAnalyser",
    "AudioResult",
    "Check",
    "LipSyncAnalyser",
    "LipSyncResult",
    "LiveQa",
    "LiveResult",
    "MediaQa",
    "NoMediaInFileError",
    "QaReport",
    "Say",
    "SyncBands",
    "Thresholds",
    "Turn",
    "VideoAnalyser",
    "VideoResult",
    "analyse_file",
    "analysis_size",
    "latency_percentiles",
    "load_thresholds",
    "plot_report",
    "sync_verdict",
]
