"""Reading recorded files back: ffprobe for what players see, PyAV for timing and content."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tests.support import require_tool


def ffprobe_streams(path: Path) -> list[dict[str, object]]:
    ffprobe = require_tool("ffprobe")
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    streams: list[dict[str, object]] = json.loads(out.stdout)["streams"]
    return streams


def decodes_cleanly(path: Path) -> str:
    """FFmpeg's errors when decoding every frame of the file ('' when none).

    WebRTC video has a variable frame rate: every frame passes as it is, in the file's own
    time base (ffmpeg's default output counts in 1/fps and would report two real frames
    closer than that as "non monotonically increasing dts").
    """
    ffmpeg = require_tool("ffmpeg")
    passthrough = ["-fps_mode", "passthrough", "-enc_time_base:v", "-1"]
    out = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), *passthrough, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stderr.strip() if out.returncode == 0 else f"rc={out.returncode} {out.stderr}"


@dataclass
class Span:
    packets: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def spans(path: Path) -> dict[str, Span]:
    """First packet start and last packet end per stream type, from the packets themselves."""
    result: dict[str, Span] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.stream.type not in ("video", "audio"):
                continue
            tb = packet.time_base
            start = float(packet.pts * tb)
            end = start + float((packet.duration or 0) * tb)
            span = result.get(packet.stream.type)
            if span is None:
                result[packet.stream.type] = Span(1, start, end)
            else:
                span.packets += 1
                span.start = min(span.start, start)
                span.end = max(span.end, end)
    return result


def mark_times(path: Path, *, audio_clock: str = "pts") -> tuple[float | None, float | None]:
    """(time of the first all-white video frame, time of the first loud audio sample).

    ``audio_clock="samples"``: the audio's time counts the samples decoded since its first
    frame's time, as a player plays them (back to back), instead of each frame's own time."""
    video_t: float | None = None
    audio_t: float | None = None
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        for frame in container.decode(vstream):
            luma = frame.reformat(format="gray").to_ndarray()
            if luma.mean() > 200 and frame.pts is not None:
                assert frame.time_base is not None
                video_t = float(frame.pts * frame.time_base)
                break
    with av.open(str(path)) as container:
        astream = container.streams.audio[0]
        played = 0  # samples before this frame
        first: float | None = None
        for aframe in container.decode(astream):
            samples = aframe.to_ndarray().astype(np.float64)
            if aframe.format.name.startswith("s16"):
                samples = samples / 32768.0
            loud = np.nonzero(np.abs(samples).max(axis=0) > 0.15)[0]
            assert aframe.pts is not None and aframe.time_base is not None
            start = float(aframe.pts * aframe.time_base)
            if first is None:
                first = start
            if audio_clock == "samples":
                start = first + played / aframe.sample_rate
            played += aframe.samples
            if loud.size:
                audio_t = start + loud[0] / aframe.sample_rate
                break
    return video_t, audio_t
