"""Media QA: frame rates, freezes, black, loudness, silences, speech, dropouts and lip sync.

Analysers take frames as they come (a live session or a file), each with its presentation
time: :class:`MediaQa` runs them all and builds a :class:`QaReport` (``to_dict()``: the JSON of
``avatar-rtc qa``); :func:`analyse_file` does it for a recorded file; :func:`plot_report` draws
its timeline. Needs the ``qa`` extra (OpenCV for the face, SciPy for the loudness filters,
matplotlib for the plot).
"""

from __future__ import annotations

from .analysis import MediaQa, analysis_size
from .audio import AudioAnalyser, AudioResult
from .file import NoMediaInFileError, analyse_file
from .lipsync import LipSyncAnalyser, LipSyncResult, SyncBands, sync_verdict
from .plot import plot_report
from .report import Check, QaReport
from .thresholds import Thresholds, load_thresholds
from .video import VideoAnalyser, VideoResult

__all__ = [
    "AudioAnalyser",
    "AudioResult",
    "Check",
    "LipSyncAnalyser",
    "LipSyncResult",
    "MediaQa",
    "NoMediaInFileError",
    "QaReport",
    "SyncBands",
    "Thresholds",
    "VideoAnalyser",
    "VideoResult",
    "analyse_file",
    "analysis_size",
    "load_thresholds",
    "plot_report",
    "sync_verdict",
]
