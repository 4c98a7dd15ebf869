"""What ``avatar-rtc probe`` measures, and its JSON report.

The report is the session's ``stats().to_dict()`` (one serialiser, versioned by its
``schema_version``) plus a ``probe`` section:

- ``target``: ``emulator``, ``service`` or ``whep``; ``window_seconds``: the measurement, from
  the first decoded video frame to the end (0 when no frame came).
- ``error``: ``null``, or ``{type, message, exit_code}`` of what ended the probe early;
  ``phases_reached``: the start-up phases completed (names of ``timings``);
  ``failed_phase``: the phase under way when it failed (``null`` without error).
- ``video``: decoded frames, fps (between the first and the last), ``width``/``height`` of the
  last frame and every ``resolutions`` seen.
- ``audio``: ``seconds`` of audio decoded; ``level_db``: its RMS level in dBFS over the whole
  probe (the energy mean of every sample, -120 for silence); ``peak_db``: the loudest 20 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..speech_detector import rms_dbfs
from .exit_status import exit_code_of

if TYPE_CHECKING:
    from ..media.frames import AudioFrame, VideoFrame
    from ..session_stats import SessionStats

__all__ = ["SILENCE_DB", "AudioLevel", "VideoCount", "build_report"]

SILENCE_DB = -120.0  # what rms_dbfs gives for digital silence


@dataclass
class VideoCount:
    """Decoded video frames seen by the probe."""

    frames: int = 0
    width: int | None = None
    height: int | None = None
    first: float | None = None  # time.monotonic() of the first / last frame's arrival
    last: float | None = None
    sizes: set[tuple[int, int]] = field(default_factory=set)

    def add(self, frame: VideoFrame) -> None:
        self.frames += 1
        self.width, self.height = frame.width, frame.height
        self.sizes.add((frame.width, frame.height))
        if self.first is None:
            self.first = frame.arrival_time
        self.last = frame.arrival_time

    @property
    def fps(self) -> float | None:
        if self.frames < 2 or self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.frames - 1) / (self.last - self.first)


@dataclass
class AudioLevel:
    """The level of all the audio a probe received (not of its last chunk)."""

    seconds: float = 0.0
    energy: float = 0.0  # sum over the frames of mean square (full scale 1.0) x seconds
    peak_db: float = SILENCE_DB

    def add(self, frame: AudioFrame) -> None:
        level = rms_dbfs(frame.data)
        self.seconds += frame.duration
        if level > SILENCE_DB:
            self.energy += 10.0 ** (level / 10.0) * frame.duration
        self.peak_db = max(self.peak_db, level)

    @property
    def level_db(self) -> float:
        """RMS level of everything added, in dBFS (-120: silence or nothing)."""
        if self.seconds <= 0 or self.energy <= 0:
            return SILENCE_DB
        return max(SILENCE_DB, 10.0 * math.log10(self.energy / self.seconds))


def build_report(
    stats: SessionStats,
    target: str,
    video: VideoCount,
    audio: AudioLevel,
    window: float,
    error: BaseException | None = None,
) -> dict[str, Any]:
    """``stats.to_dict()`` plus the ``probe`` section (plain data; no credentials in it)."""
    report = stats.to_dict()
    fps = video.fps
    report["probe"] = {
        "target": target,
        "window_seconds": round(window, 3),
        "error": None if error is None else _error(error),
        "phases_reached": list(stats.timings.reached()),
        "failed_phase": (
            None if error is None else stats.timings.pending(control_api=target != "whep")
        ),
        "video": {
            "frames": video.frames,
            "fps": None if fps is None else round(fps, 2),
            "width": video.width,
            "height": video.height,
            "resolutions": sorted(f"{w}x{h}" for w, h in video.sizes),
        },
        "audio": {
            "seconds": round(audio.seconds, 3),
            "level_db": round(audio.level_db, 1),
            "peak_db": round(audio.peak_db, 1),
        },
    }
    return report


def _error(exc: BaseException) -> dict[str, Any]:
    lines = str(exc).strip().splitlines()
    return {
        "type": type(exc).__name__,
        "message": lines[0] if lines else "",
        "exit_code": exit_code_of(exc),
    }
