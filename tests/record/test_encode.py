"""Encode mode: decoded frames re-encoded to the requested codec and size."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import av
import pytest

from avatar_rtc.record import EncodeOptions, Recorder, RecordError, RecordOptions
from tests.record.filecheck import decodes_cleanly, ffprobe_streams, mark_times, spans
from tests.record.synth import Scenario, decoded_frames

SC = Scenario(duration=3.0, mark=1.6, audio_gap=(0.6, 0.9))


@cache
def decoded() -> tuple[tuple[str, av.VideoFrame | av.AudioFrame, float], ...]:
    return tuple(decoded_frames(SC))


def record_encoded(path: Path, opts: EncodeOptions) -> None:
    recorder = Recorder(path, RecordOptions(mode="encode", encode=opts)).start()
    for kind, frame, t in decoded():
        if kind == "video":
            assert isinstance(frame, av.VideoFrame)
            recorder.write_video(frame, t)
        else:
            assert isinstance(frame, av.AudioFrame)
            recorder.write_audio(frame, t)
    stats = recorder.stop()
    assert stats.error is None and stats.video.frames > 0


@pytest.mark.parametrize(
    ("ext", "opts", "vcodec", "acodec", "size"),
    [
        ("mp4", EncodeOptions(width=320, height=240, fps=15), "h264", "aac", (320, 240)),
        ("webm", EncodeOptions(), "vp8", "opus", (512, 512)),
        (
            "mkv",
            EncodeOptions(video_codec="libx264", audio_codec="libopus", width=256, height=256),
            "h264",
            "opus",
            (256, 256),
        ),
    ],
)
def test_encode_produces_requested_format_in_sync(
    tmp_path: Path,
    ext: str,
    opts: EncodeOptions,
    vcodec: str,
    acodec: str,
    size: tuple[int, int],
) -> None:
    path = tmp_path / f"enc.{ext}"
    record_encoded(path, opts)
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert streams["video"]["codec_name"] == vcodec
    assert (streams["video"]["width"], streams["video"]["height"]) == size
    assert streams["audio"]["codec_name"] == acodec
    span = spans(path)
    assert abs(span["video"].duration - SC.duration) < 0.1, span
    assert abs(span["audio"].duration - span["video"].duration) < 0.1, span
    if opts.fps:
        assert span["video"].packets <= SC.duration * opts.fps + 1
    assert decodes_cleanly(path) == ""
    video_t, audio_t = mark_times(path)
    assert video_t is not None and audio_t is not None
    assert abs(video_t - SC.mark) < 0.041 if opts.fps else abs(video_t - SC.mark) < 0.021  # type: ignore[operator]
    assert abs(audio_t - video_t) < 0.040, (video_t, audio_t)


def test_encode_rejects_codec_the_container_cannot_hold() -> None:
    with pytest.raises(RecordError, match="webm cannot hold video encoded with libx264"):
        Recorder(
            "x.webm", RecordOptions(mode="encode", encode=EncodeOptions(video_codec="libx264"))
        )
    recorder = Recorder("x.mkv", RecordOptions(mode="encode"))
    with pytest.raises(RecordError, match="write_video"):
        recorder.write(None)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="copy"):
        recorder.attach(None)  # type: ignore[arg-type]
