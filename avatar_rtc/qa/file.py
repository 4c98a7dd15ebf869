"""QA of a recorded file: any container PyAV/FFmpeg reads (MP4, MKV, WebM; H264 or VP8 + Opus).

Cost: every video frame is decoded (a freeze can hide anywhere) but converted only once, by
one ``sws_scale`` call, to a small grey picture (:func:`~.analysis.analysis_size`); the decoder
uses frame threads. Audio is decoded to planar float at its own rate (more than two channels
are downmixed to stereo). A hole in the audio timestamps (a recorder that missed packets) is
filled with silence by :class:`~.analysis.MediaQa`, as a live session's is. A damaged or
truncated file (packets the demuxer flags corrupt, a decoding error, media ending well before
the duration the container declares) is analysed as far as it decodes, logged as a warning,
listed in the report's ``media.damage`` and fails the check ``file.intact``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import av

from ..errors import AvatarRTCError
from .analysis import MediaQa
from .report import Check, QaReport
from .thresholds import Thresholds

__all__ = ["NoMediaInFileError", "analyse_file"]

logger = logging.getLogger(__name__)

TRUNCATED_AFTER = 1.0  # seconds of declared duration past the media: a truncated file


class NoMediaInFileError(AvatarRTCError):
    """The file is not media, has neither a video nor an audio frame, or no time (an image)."""

    exit_code = 3


def analyse_file(
    path: str | Path, thresholds: Thresholds | None = None, *, lipsync: bool = True
) -> QaReport:
    """Analyse the first video and the first audio stream of ``path``.

    Raises :class:`FileNotFoundError` if there is no such file and :class:`NoMediaInFileError`
    if nothing in it decodes.
    """
    path = Path(path)
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{what}: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise NoMediaInFileError(f"{path}: not a media file ({exc})") from exc
    qa = MediaQa(thresholds, lipsync=lipsync)
    with container:
        media = _describe(path, container)
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        if not streams:
            raise NoMediaInFileError(f"{path}: no audio or video stream")
        damage: list[str] = []
        try:
            corrupt = _decode(container, streams, qa)
            if corrupt:
                damage.append(f"{corrupt} damaged packet(s): truncated or corrupted")
        except av.error.FFmpegError as exc:
            # A truncated or damaged file: report what decoded before the damage.
            damage.append(f"decoding stopped: {exc}")
        declared = container.duration / 1e6 if container.duration else None
    report = qa.report(media)
    if report.video is None and report.audio is None:
        raise NoMediaInFileError(f"{path}: no frame decoded")
    if not report.duration > 0:  # a still image passed every check, on nothing
        raise NoMediaInFileError(f"{path}: no media time (one picture, no sound)")
    end = report.origin + report.duration
    if declared is not None and declared - end > max(TRUNCATED_AFTER, 0.05 * declared):
        # (a Matroska file keeps the duration it was written with in its header)
        damage.append(f"the media ends at {end:.1f} s of the {declared:.1f} s it declares")
    if damage:
        # A truncated file otherwise passed as a shorter one: QA covers what decoded.
        report.media["damage"] = damage
        report.checks.append(Check("file.intact", "; ".join(damage), "no damage", False))
        logger.warning("%s: %s; QA covers what decoded", path, "; ".join(damage))
    return report


def _describe(path: Path, container: Any) -> dict[str, Any]:
    video = container.streams.video[0].codec_context.name if container.streams.video else None
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    return {
        "source": str(path),
        "container": container.format.name,
        "video_codec": video,
        "audio_codec": audio,
    }


def _decode(container: Any, streams: list[Any], qa: MediaQa) -> int:
    """Feed every frame to ``qa``; the number of packets the demuxer flagged corrupt (the
    partial last one of a cut MP4)."""
    resampler: Any = None
    corrupt = 0
    clock = _VideoClock()
    for stream in streams:
        if stream.type == "video":
            stream.thread_type = "AUTO"
            clock.step = 1.0 / float(stream.average_rate or 25)
    for packet in container.demux(*streams):
        corrupt += packet.is_corrupt
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                qa.feed_frame(frame, clock.time_of(frame.time))
            elif isinstance(frame, av.AudioFrame):
                if resampler is None:
                    layout = "stereo" if frame.layout.nb_channels > 2 else frame.layout.name
                    resampler = av.AudioResampler(format="fltp", layout=layout, rate=frame.rate)
                for out in resampler.resample(frame):
                    qa.feed_audio(out.to_ndarray(), float(out.time or 0.0), out.rate)
    return corrupt


class _VideoClock:
    """A frame's time; one frame interval after the previous when it has no timestamp."""

    def __init__(self) -> None:
        self.step = 0.04
        self._last: float | None = None

    def time_of(self, time: float | None) -> float:
        if time is None:
            time = 0.0 if self._last is None else self._last + self.step
        self._last = float(time)
        return self._last
