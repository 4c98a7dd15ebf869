"""Counters of a recording: what reached the file, what was skipped, what was dropped."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["RecordedStreamStats", "RecorderStats", "StatsBook", "StreamAction", "StreamRoute"]

StreamAction = Literal["copy", "transcode", "encode"]


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """How one stream reached the file.

    ``copy``: written as received. ``transcode`` (copy mode): the received codec does not fit
    the container, so it was decoded and re-encoded. ``encode`` (``mode="encode"``): decoded
    frames encoded as asked; the recorder never sees the received codec then (``source`` None).
    Codec names are FFmpeg's (``h264``, ``vp8``, ``opus``); ``encoder`` is the FFmpeg encoder
    used (``libvpx``), None for copy.
    """

    action: StreamAction
    source: str | None
    output: str
    encoder: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedStreamStats:
    """One stream of the file. Times are seconds on the file's timeline (0 = start)."""

    codec: str | None = None
    frames: int = 0  # packets muxed (copy) / frames handed to the encoder (encode)
    bytes: int = 0  # compressed bytes muxed
    start: float | None = None
    end: float | None = None  # end of the last frame

    @property
    def duration(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """A snapshot of :meth:`Recorder.stats`.

    - ``dropped``: frames refused because the writer queue was full (plus video frames skipped
      after such a drop until the next keyframe), and frames discarded after a writer error.
      Never silent: each overflow episode is also logged as an error.
    - ``skipped_before_start``: video before the first keyframe and audio trimmed to it.
    - ``timestamp_fixups``: frames whose time did not increase and were nudged by one tick.
    - ``audio_overlap_drops``: copy mode: Opus packets whose clock time fell more than half a
      packet inside audio already written (the A/V clock slewing audio earlier); writing them
      would push all later audio late, so they are dropped: audio stays within 10 ms of video.
    - ``parts``: copy mode: the files the recording continued in after the video's codec
      parameters changed (``OUT.part2.ext``, ...; see :mod:`avatar_rtc.record.muxer`); empty
      while everything is in ``path``; ``part_starts``: where each begins (seconds from the
      start of ``path``; each file itself starts at 0). The counters cover all parts.
    """

    path: str
    mode: str
    started: bool
    closed: bool
    video: RecordedStreamStats
    audio: RecordedStreamStats
    duration: float
    queued: int
    queued_bytes: int
    peak_queued: int
    peak_queued_bytes: int
    dropped: int
    dropped_bytes: int
    skipped_before_start: int
    skipped_rate: int  # encode mode: frames over the fps cap
    timestamp_fixups: int
    audio_overlap_drops: int
    audio_fill_packets: int  # copy mode: Opus silence packets written into holes in the audio
    transcoded_video: bool  # copy mode: the video had to be re-encoded to fit the container
    late_writes: int  # frames written after stop() began (ignored)
    error: str | None
    video_route: StreamRoute | None = None  # known once the file is open
    audio_route: StreamRoute | None = None
    parts: tuple[str, ...] = ()
    part_starts: tuple[float, ...] = ()


class _StreamBook:
    __slots__ = ("bytes", "codec", "end", "frames", "start")

    def __init__(self) -> None:
        self.codec: str | None = None
        self.frames = 0
        self.bytes = 0
        self.start: float | None = None
        self.end: float | None = None

    def snapshot(self) -> RecordedStreamStats:
        return RecordedStreamStats(self.codec, self.frames, self.bytes, self.start, self.end)


class StatsBook:
    """Writer-side counters, updated in the writer thread and read from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.video = _StreamBook()
        self.audio = _StreamBook()
        self.started = False
        self.skipped_before_start = 0
        self.skipped_rate = 0
        self.timestamp_fixups = 0
        self.audio_fill_packets = 0
        self.audio_overlap_drops = 0
        self.transcoded_video = False
        self.video_route: StreamRoute | None = None
        self.audio_route: StreamRoute | None = None
        self.parts: list[str] = []
        self.part_starts: list[float] = []

    def stream(self, kind: str) -> _StreamBook:
        return self.video if kind == "video" else self.audio

    def add(self, kind: str, start: float, end: float, nbytes: int, frames: int = 1) -> None:
        with self.lock:
            book = self.stream(kind)
            book.frames += frames
            book.bytes += nbytes
            if book.start is None:
                book.start = start
            book.end = end if book.end is None else max(book.end, end)

    def add_bytes(self, kind: str, nbytes: int) -> None:
        with self.lock:
            self.stream(kind).bytes += nbytes

    def skip_before_start(self, count: int = 1) -> None:
        with self.lock:
            self.skipped_before_start += count

    def fixup(self) -> None:
        with self.lock:
            self.timestamp_fixups += 1
