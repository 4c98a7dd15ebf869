"""The QA report: what the analysers found, judged against :class:`Thresholds`.

``to_dict()`` is the JSON other tools rely on (``schema_version`` 1); times are in seconds
from the first frame of the media (``origin``, the earlier of the first video frame and the
first audio sample). Lists of stretches are ``{"start_s", "duration_s"}``, speech segments
``{"start_s", "end_s"}``. A value that could not be measured is ``null``.

A live session's report (:class:`LiveResult`) has three more keys: ``start`` (the start-up
phases in seconds, ``total`` being the time to first frame), ``turns`` (:mod:`.turns`) and
``network`` (:mod:`.network`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .audio import AudioResult
from .lipsync import LipSyncResult
from .network import NetworkResult
from .spans import Span
from .thresholds import Thresholds
from .turns import Say, Turn, latency_percentiles, measure_turns
from .video import VideoResult

__all__ = ["SCHEMA_VERSION", "Check", "LiveResult", "QaReport", "evaluate"]

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold: the measured ``value``, the ``limit`` as text, whether it holds."""

    name: str
    value: float | str | None
    limit: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        value = round(self.value, 3) if isinstance(self.value, float) else self.value
        return {"name": self.name, "value": value, "limit": self.limit, "ok": self.ok}


@dataclass(frozen=True)
class LiveResult:
    """What only a live session has; times on the analysers' clock."""

    session_id: str | None
    start: dict[str, float | None]  # SessionTimings.as_dict(): phases, "total" = TTFF
    says: list[Say]
    network: NetworkResult
    not_analysed: int = 0  # video frames the analysis was too far behind to look at


@dataclass
class QaReport:
    origin: float
    video: VideoResult | None
    audio: AudioResult | None
    lipsync: LipSyncResult | None
    thresholds: Thresholds
    checks: list[Check] = field(default_factory=list)
    media: dict[str, Any] = field(default_factory=dict)  # source, container, codecs
    live: LiveResult | None = None

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        return "pass" if all(c.ok for c in self.checks) else "fail"

    @property
    def duration(self) -> float:
        ends = []
        if self.video is not None and self.video.last_time is not None:
            ends.append(self.video.last_time)
        if self.audio is not None and self.audio.first_time is not None:
            ends.append(self.audio.first_time + self.audio.duration)
        return max(ends) - self.origin if ends else 0.0

    def counted_black(self) -> list[Span]:
        """Black runs that count against the limit: not the ones the picture starts with."""
        v = self.video
        if v is None or v.first_time is None:
            return []
        return [b for b in v.black if b.start > v.first_time + 1e-6]

    def turns(self) -> list[Turn]:
        """Each say of a live session, with when it was heard and seen (none for a file)."""
        if self.live is None:
            return []
        speech = self.audio.speech if self.audio is not None else []
        s = self.lipsync
        times = s.mouth_times if s is not None else np.zeros(0)
        openness = s.mouth_openness if s is not None else np.zeros(0)
        end = self.origin + self.duration
        return measure_turns(self.live.says, speech, times, openness, end)

    def to_dict(self) -> dict[str, Any]:
        live: dict[str, Any] = {}
        video = self._video_dict()
        if self.live is not None:
            start = {k: _round(v) for k, v in self.live.start.items()}
            live = {
                "start": {"session_id": self.live.session_id, **start},
                "turns": self._turns_dict(),
                "network": self.live.network.to_dict(self.origin),
            }
            if video is not None:
                video["not_analysed_frames"] = self.live.not_analysed
        return {
            "schema_version": SCHEMA_VERSION,
            **self.media,
            "duration_s": round(self.duration, 3),
            "video": video,
            "audio": self._audio_dict(),
            "lipsync": self._lipsync_dict(),
            **live,
            "checks": [c.to_dict() for c in self.checks],
            "verdict": self.verdict,
        }

    def _turns_dict(self) -> dict[str, Any]:
        turns = self.turns()
        return {
            "count": len(turns),
            "speech_latency_s": latency_percentiles([t.speech_latency for t in turns]),
            "mouth_latency_s": latency_percentiles([t.mouth_latency for t in turns]),
            "items": [t.to_dict(self.origin) for t in turns],
        }

    def _spans(self, spans: list[Span]) -> list[dict[str, Any]]:
        return [s.shifted(self.origin).to_dict() for s in spans]

    def _video_dict(self) -> dict[str, Any] | None:
        v = self.video
        if v is None:
            return None
        return {
            "width": v.width,
            "height": v.height,
            "frames": v.frames,
            "new_frames": v.new_frames,
            "fps": _round(v.fps, 2),
            "harmonic_fps": _round(v.harmonic_fps, 2),
            "first_frame_s": _round(None if v.first_time is None else v.first_time - self.origin),
            "freezes": self._spans(list(v.freezes)),
            "pauses": self._spans(v.pauses),
            "black": self._spans(v.black),
        }

    def _audio_dict(self) -> dict[str, Any] | None:
        a = self.audio
        if a is None:
            return None
        return {
            "sample_rate": a.rate,
            "channels": a.channels,
            "integrated_lufs": _round(a.loudness.integrated_lufs, 2),
            "true_peak_dbtp": _round(a.loudness.true_peak_dbtp, 2),
            "silences": self._spans(a.silences),
            "speech": [
                {"start_s": round(s.start - self.origin, 3), "end_s": round(s.end - self.origin, 3)}
                for s in a.speech
            ],
            "dropouts": self._spans(a.dropouts),
            "dropout_check": a.dropout_check,
            "missing": self._spans(a.missing),
        }

    def _lipsync_dict(self) -> dict[str, Any]:
        s = self.lipsync
        if s is None:
            return {"offset_ms": None, "confidence": 0.0, "verdict": "unknown", "mouth": None}
        return {
            "offset_ms": s.offset_ms,
            "confidence": s.confidence,
            "verdict": s.verdict,
            "mouth": s.mouth_source,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def evaluate(report: QaReport) -> list[Check]:
    """The checks of ``report.thresholds`` that apply to what was measured."""
    t = report.thresholds
    checks: list[Check] = []

    def at_most(name: str, count: int, limit: int) -> None:
        checks.append(Check(name, float(count), f"<= {limit}", count <= limit))

    def bounded(name: str, value: float | None, low: float | None, high: float | None) -> None:
        if low is not None:
            checks.append(Check(name, value, f">= {low}", value is not None and value >= low))
        if high is not None:
            checks.append(Check(name, value, f"<= {high}", value is not None and value <= high))

    v, a, s = report.video, report.audio, report.lipsync
    if v is not None:
        at_most("video.freezes", len(v.freezes), t.max_freezes)
        at_most("video.pauses", len(v.pauses), t.max_pauses)
        at_most("video.black", len(report.counted_black()), t.max_black)
        bounded("video.fps", v.fps, t.min_fps, None)
    if a is not None:
        # The level rule alone cannot tell a cut from a synthetic voice's abrupt pause: its
        # candidates are reported, judged only once the mouth confirmed them.
        if a.dropout_check == "mouth":
            at_most("audio.dropouts", len(a.dropouts), t.max_dropouts)
        if t.max_missing is not None:
            at_most("audio.missing", len(a.missing), t.max_missing)
        lufs = a.loudness.integrated_lufs
        bounded("audio.integrated_lufs", lufs, t.min_integrated_lufs, t.max_integrated_lufs)
        bounded("audio.true_peak_dbtp", a.loudness.true_peak_dbtp, None, t.max_true_peak_dbtp)
    if s is not None:
        b = t.lipsync
        limit = f"within +{b.warn_lead_ms:g}/-{b.warn_lag_ms:g} ms"
        checks.append(Check("lipsync.verdict", s.verdict, limit, s.verdict != "fail"))
    if report.live is not None:
        bounded("start.ttff_s", report.live.start.get("total"), None, t.max_ttff_s)
        turns = report.turns()
        if turns and t.max_say_to_speech_s is not None:
            # The slowest turn; one never heard breaches the limit (no value).
            latencies = [turn.speech_latency for turn in turns]
            worst = None if None in latencies else max(v for v in latencies if v is not None)
            bounded("turns.say_to_speech_s", worst, None, t.max_say_to_speech_s)
    return checks
