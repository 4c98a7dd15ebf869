"""MediaQa: every analyser of one audio + video pair, fed frame by frame, and its report.

A file (:mod:`.file`) and a live session feed it the same way: grey video frames (see
:func:`analysis_size`) and float audio chunks, each with its presentation time in seconds.

Where the audio's times jump (packets that never came: a file's recorder missed them, or a live
gap longer than the session's rechunker fills, 1 s) the hole is fed as silence, so what
follows keeps its time; holes of ``MISSING_AFTER`` or more are reported as ``audio.missing``,
and so is audio that stops that long before the video does. Video that stops while the audio
goes on is a freeze (``missing``) or, past 5 s, a pause, up to the audio's end
(:meth:`~.video.VideoAnalyser.result`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from ..media.scale import scale
from .audio import AudioAnalyser, AudioResult
from .dropouts import confirm_by_mouth
from .hops import Samples
from .lipsync import LipSyncAnalyser, LipSyncResult
from .report import LiveResult, QaReport, evaluate
from .spans import Span
from .thresholds import Thresholds
from .video import GrayImage, VideoAnalyser

__all__ = ["ANALYSIS_SIDE", "MISSING_AFTER", "MediaQa", "analysis_size"]

ANALYSIS_SIDE = 320  # pixels: the longer side of the grey frames the analysers look at
MISSING_AFTER = 1.0  # seconds without audio that are reported (Opus DTX sends every 0.4 s)
HOLE_TOLERANCE = 0.03  # seconds: less is timestamp rounding, not a hole


def analysis_size(width: int, height: int, side: int = ANALYSIS_SIDE) -> tuple[int, int]:
    """(width, height) to shrink a frame to: longer side ``side`` at most, even, same aspect."""
    scale = min(1.0, side / max(width, height))
    return max(round(width * scale / 2) * 2, 2), max(round(height * scale / 2) * 2, 2)


class MediaQa:
    """Feed video frames and audio chunks (the audio format is fixed by the first chunk)."""

    def __init__(self, thresholds: Thresholds | None = None, *, lipsync: bool = True) -> None:
        self.thresholds = thresholds or Thresholds()
        self.video = VideoAnalyser()
        self.audio: AudioAnalyser | None = None
        self._lipsync = LipSyncAnalyser(bands=self.thresholds.lipsync) if lipsync else None
        self._video_seen = False
        self._size: tuple[int, int] | None = None  # of the grey frames, from the first frame
        self._audio_end: float | None = None  # where the audio fed so far ends
        self._missing: list[Span] = []  # audio holes of MISSING_AFTER or more

    def feed_frame(self, frame: av.VideoFrame, t: float) -> None:
        """A decoded frame shown at ``t``: shrunk to grey (:func:`analysis_size` of the first
        frame) by one ``sws_scale`` call, then fed."""
        if self._size is None:
            self._size = analysis_size(frame.width, frame.height)
        gray: GrayImage = scale(
            frame, width=self._size[0], height=self._size[1], format="gray", interpolation="AREA"
        ).to_ndarray()  # type: ignore[assignment]  # gray is uint8
        self.feed_video(gray, t, (frame.width, frame.height))

    def feed_video(self, gray: GrayImage, t: float, size: tuple[int, int] | None = None) -> None:
        """A grey frame shown at ``t``; ``size``: the frame's (width, height) before shrinking."""
        self._video_seen = True
        self.video.feed(gray, t, size)
        if self._lipsync is not None:
            self._lipsync.feed_video(gray, t)

    def feed_audio(self, samples: Samples, t: float, rate: int) -> None:
        """A ``(channels, n)`` chunk whose first sample plays at ``t``."""
        for start, silence in self._hole_before(t, samples.shape[0], rate):
            self._feed_audio(silence, start, rate)
        self._feed_audio(samples, t, rate)
        end = t + samples.shape[1] / rate  # (a file's times may step back: keep the furthest)
        self._audio_end = end if self._audio_end is None else max(self._audio_end, end)

    def _feed_audio(self, samples: Samples, t: float, rate: int) -> None:
        if self.audio is None:
            self.audio = AudioAnalyser(rate, samples.shape[0])
        self.audio.feed(samples, t)
        if self._lipsync is not None:
            self._lipsync.feed_audio(samples, t, rate)

    def _hole_before(self, t: float, channels: int, rate: int) -> Iterator[tuple[float, Samples]]:
        """Silence from where the audio so far ends to ``t``, in chunks of at most a second."""
        at = self._audio_end
        if at is None or t - at <= HOLE_TOLERANCE:
            return
        if t - at >= MISSING_AFTER:
            self._missing.append(Span(at, t - at))
        while (n := min(round((t - at) * rate), rate)) > 0:
            yield at, np.zeros((channels, n), np.float32)
            at += n / rate

    def report(
        self, media: dict[str, Any] | None = None, live: LiveResult | None = None
    ) -> QaReport:
        """The report so far; ``media``: what to say about the source (name, codecs...);
        ``live``: what a live session adds (start-up, turns, network)."""
        video = self.video.result(end=self._audio_end) if self._video_seen else None
        audio = self.audio.result() if self.audio is not None else None
        if audio is not None:
            audio.missing = list(self._missing)
            # The audio stopped while the video went on.
            audio_end = self._audio_end or 0.0
            video_end = video.last_time if video is not None else None
            if video_end is not None and video_end - audio_end >= MISSING_AFTER:
                audio.missing.append(Span(audio_end, video_end - audio_end))
        lipsync = None
        if self._lipsync is not None and video is not None:
            lipsync = self._lipsync.result()
            if audio is not None:
                _confirm_dropouts(audio, lipsync, video.freezes + video.pauses, video.black)
        starts = [
            r.first_time for r in (video, audio) if r is not None and r.first_time is not None
        ]
        report = QaReport(
            origin=min(starts) if starts else 0.0,
            video=video,
            audio=audio,
            lipsync=lipsync,
            thresholds=self.thresholds,
            media=dict(media or {}),
            live=live,
        )
        report.checks = evaluate(report)
        return report


def _confirm_dropouts(
    audio: AudioResult, lipsync: LipSyncResult, still: list[Span], black: list[Span]
) -> None:
    """Keep the dropouts the mouth confirms (when it can tell), read at the sound's time.
    ``still``: where the picture stood still (freezes, pauses), ``black``: black runs: a
    mouth frozen open (or none) there says nothing, so the mouth is not read there, and the
    pauses the mouth alone would judge there are left out."""
    known = lipsync.offset_ms is not None and lipsync.verdict != "unknown"
    # The step rule's dropouts, and the pauses it did not see (judged by the mouth alone).
    pauses = [
        p
        for p in audio.pauses
        if not any(_overlap(p, d) for d in audio.dropouts)
        and (known and not any(_overlap(p, s) for s in still))
    ]
    kept = confirm_by_mouth(
        audio.dropouts + pauses,
        audio.speech,
        lipsync.mouth_times,
        lipsync.mouth_openness,
        lipsync.motion_times,
        lipsync.motion,
        offset=(lipsync.offset_ms or 0.0) / 1000.0 if known else 0.0,
        blind=still + black,
    )
    if kept is not None:
        found = [span if span in audio.dropouts else audio.fade_start(span) for span in kept]
        audio.dropouts, audio.dropout_check = sorted(found, key=lambda s: s.start), "mouth"


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end
