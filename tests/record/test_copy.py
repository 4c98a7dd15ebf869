"""Copy mode: received compressed frames to MP4 / MKV / WebM without re-encoding."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import av
import pytest

from avatar_rtc.record import Recorder, RecordError, RecorderStats, RecordOptions
from avatar_rtc.record import muxer as muxer_module
from avatar_rtc.record import recorder as recorder_module
from avatar_rtc.record.bitstream import iter_annexb_nals
from avatar_rtc.record.muxer import CopyMuxer
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.record.filecheck import decodes_cleanly, ffprobe_streams, mark_times, spans
from tests.record.synth import SIZE, Scenario, encoded_frames

MARK = 2.0
PLAIN = {
    "H264": Scenario(video_codec="H264", mark=MARK),
    "VP8": Scenario(video_codec="VP8", mark=MARK),
}
# A 0.8 s video freeze, 0.5 s of lost audio, +-4 ms jitter on video times; the mark after both.
GAPPY = Scenario(duration=4.0, mark=3.2, video_gap=(1.2, 2.0), audio_gap=(2.2, 2.7), jitter=0.004)


@cache
def frames_for(sc: Scenario) -> tuple[EncodedFrame, ...]:
    return tuple(encoded_frames(sc))


def record(
    path: Path, frames: tuple[EncodedFrame, ...] | list[EncodedFrame], **kw: object
) -> RecorderStats:
    recorder = Recorder(path, **kw).start()  # type: ignore[arg-type]
    for frame in frames:
        recorder.write(frame)
    return recorder.stop()


def assert_av_file(path: Path, video_codec: str, duration: float) -> None:
    streams = ffprobe_streams(path)
    assert sorted(str(s["codec_type"]) for s in streams) == ["audio", "video"]
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next(s for s in streams if s["codec_type"] == "audio")
    assert video["codec_name"] == video_codec
    if video_codec == "h264":
        # The muxer turned our Annex-B SPS/PPS into avcC and the frames into length-prefixed.
        assert video["is_avc"] == "true" and video["nal_length_size"] == "4"
    assert (video["width"], video["height"]) == (SIZE, SIZE)
    assert audio["codec_name"] == "opus"
    assert audio["sample_rate"] == "48000"
    span = spans(path)
    assert abs(span["video"].start) < 0.001 and abs(span["audio"].start) < 0.025
    assert abs(span["video"].duration - span["audio"].duration) < 0.1, span
    assert abs(span["video"].duration - duration) < 0.1, span
    assert abs(span["audio"].duration - duration) < 0.1, span
    assert decodes_cleanly(path) == ""


@pytest.mark.parametrize(
    ("codec", "ext", "ffname"),
    [
        ("H264", "mp4", "h264"),
        ("H264", "mkv", "h264"),
        ("VP8", "webm", "vp8"),
        ("VP8", "mkv", "vp8"),
    ],
)
def test_copy_is_playable_complete_and_aligned(
    tmp_path: Path, codec: str, ext: str, ffname: str
) -> None:
    sc = PLAIN[codec]
    path = tmp_path / f"out.{ext}"
    stats = record(path, frames_for(sc))
    assert stats.started and stats.closed and stats.error is None
    assert stats.dropped == 0
    assert stats.video.frames == 100 and stats.audio.frames == 200
    assert stats.skipped_before_start == 15  # 0.3 s of audio before the first keyframe
    assert abs(stats.duration - sc.duration) < 0.05
    assert_av_file(path, ffname, sc.duration)
    video_t, audio_t = mark_times(path)
    assert video_t is not None and audio_t is not None
    assert abs(video_t - MARK) < 0.021, video_t
    assert abs(audio_t - video_t) < 0.040, (video_t, audio_t)


# Audio packets off the video's 40 ms grid: the first one kept starts 15 ms after the keyframe.
OFF_GRID = Scenario(mark=MARK, audio_lead=0.285)
# The synthetic Opus encoder's look-ahead: its beep is decoded this much late, as over RTP,
# which has no pre-skip to take it off (the file's Opus header says 0).
OPUS_LOOKAHEAD = 312 / 48000


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_audio_starting_after_the_video_starts_with_silence(tmp_path: Path, ext: str) -> None:
    # A fragmented MP4 has no edit list to start a track later: it put the first audio packet
    # at 0, and the audio, played back to back, was 15 ms early. The hole before it is filled
    # as any hole is: whole 20 ms packets, the packet within 10 ms of its time.
    path = tmp_path / f"off_grid.{ext}"
    stats = record(path, frames_for(OFF_GRID))
    assert stats.audio_fill_packets == 1
    span = spans(path)
    assert span["video"].start == pytest.approx(0.0, abs=0.001)
    assert span["audio"].start == pytest.approx(0.0, abs=0.001)
    video_t, audio_t = mark_times(path, audio_clock="samples")
    assert video_t is not None and audio_t is not None
    assert abs(video_t - MARK) < 0.021, video_t
    assert audio_t - video_t == pytest.approx(OPUS_LOOKAHEAD, abs=0.010), (video_t, audio_t)
    assert decodes_cleanly(path) == ""


def test_copy_does_not_decode_or_reencode(tmp_path: Path) -> None:
    frames = frames_for(PLAIN["H264"])
    path = tmp_path / "out.mkv"
    record(path, frames)
    sent = [f.data for f in frames if f.kind == "video"]
    with av.open(str(path)) as container:
        got = [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]
    assert len(got) == len(sent)
    # Matroska stores H264 length-prefixed instead of Annex-B: the NAL units are the same bytes.
    assert [length_prefixed_nals(g) for g in got] == [list(iter_annexb_nals(s)) for s in sent]


def length_prefixed_nals(data: bytes) -> list[bytes]:
    nals, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        nals.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return nals


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_gaps_and_jitter_do_not_shift_audio_against_video(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"gappy.{ext}"
    stats = record(path, frames_for(GAPPY))
    assert stats.audio_fill_packets >= 20  # the 0.5 s hole holds silence, not nothing
    assert stats.video.frames == 80
    span = spans(path)
    assert abs(span["video"].duration - GAPPY.duration) < 0.1, span
    assert abs(span["audio"].duration - GAPPY.duration) < 0.1, span
    video_t, audio_t = mark_times(path)
    assert video_t is not None and audio_t is not None
    assert abs(video_t - 3.2) < 0.021
    assert abs(audio_t - video_t) < 0.040, (video_t, audio_t)
    assert decodes_cleanly(path) == ""


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_audio_played_back_to_back_keeps_its_length_through_a_clock_slew(
    tmp_path: Path, ext: str
) -> None:
    # After a reconnect the A/V clock slews audio onto the time line: 25 packets 22 ms apart
    # (50 ms in all). Holes of 2 ms were skipped (under 30 ms) and longer ones rounded down:
    # played back to back (a WAV export, QA of the file) the audio came up to 355 ms short
    # after six reconnects and ran ahead of the video.
    audio_seen = 0
    frames = []
    for frame in frames_for(PLAIN["H264"]):
        if frame.kind == "audio":
            slew = 0.002 * min(max(audio_seen - 100, 0), 25)
            frame = dataclasses.replace(frame, presentation_time=frame.presentation_time + slew)
            audio_seen += 1
        frames.append(frame)
    path = tmp_path / f"slewed.{ext}"
    stats = record(path, frames)
    assert stats.audio_fill_packets in (2, 3)  # 50 ms: the nearest whole packets
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(audio=0) if p.size]
        first, last = packets[0], packets[-1]
        assert first.pts is not None and last.pts is not None and last.duration is not None
        assert first.time_base is not None
        timeline = float((last.pts + last.duration - first.pts) * first.time_base)
        container.seek(0)
        played = sum(f.samples for f in container.decode(audio=0)) / 48000
    assert abs(played - timeline) < 0.011, (played, timeline)  # was 50 ms short
    assert decodes_cleanly(path) == ""


def test_a_hole_longer_than_the_fills_cap_leaves_the_audio_at_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cap (10 minutes of silence) was filled, then the next packet put right after it,
    # 100 s early in a 700 s outage: here a cap of 10 packets and a 1 s hole
    monkeypatch.setattr(muxer_module, "_MAX_FILL_PACKETS", 10)
    frames, audio_seen = [], 0
    for frame in frames_for(PLAIN["H264"]):
        if frame.kind == "audio":
            audio_seen += 1
            if 100 <= audio_seen < 150:
                continue  # 1 s of audio lost
        frames.append(frame)
    path = tmp_path / "hole.mkv"
    stats = record(path, frames)
    assert stats.audio_fill_packets == 10
    with av.open(str(path)) as container:
        times = [
            float(p.pts * p.time_base)
            for p in container.demux(audio=0)
            if p.size and p.pts is not None and p.time_base is not None
        ]
    jumps = [b - a for a, b in itertools.pairwise(times) if b - a > 0.03]
    # from the last filler's start to the next packet: the 1 s lost less 10 x 20 ms of fill,
    # plus the filler's own 20 ms (was: no jump there, the packet 0.8 s early, then one later)
    assert len(jumps) == 1 and jumps[0] == pytest.approx(0.82, abs=0.011)


def test_writing_starts_at_first_keyframe_and_trims_audio(tmp_path: Path) -> None:
    frames = frames_for(PLAIN["H264"])
    # Join mid-GOP: the first 10 video frames (the keyframe among them) never arrive.
    late = [f for f in frames if not (f.kind == "video" and f.index < 10)]
    path = tmp_path / "late.mp4"
    stats = record(path, late)
    assert stats.video.frames == 75  # frames 25..99: from the next keyframe at t=1.0 s
    assert stats.skipped_before_start >= 15 + 15
    with av.open(str(path)) as container:
        first = next(container.demux(container.streams.video[0]))
        assert first.is_keyframe and first.pts == 0
    span = spans(path)
    assert abs(span["audio"].start) < 0.021 and abs(span["video"].duration - 3.0) < 0.05
    video_t, audio_t = mark_times(path)
    assert video_t is not None and audio_t is not None
    assert abs(video_t - (MARK - 1.0)) < 0.021 and abs(audio_t - video_t) < 0.040


def test_h264_into_webm_can_be_a_clear_error(tmp_path: Path) -> None:
    opts = RecordOptions(incompatible_video="error")
    recorder = Recorder(tmp_path / "x.webm", options=opts).start()
    for frame in frames_for(PLAIN["H264"])[:40]:
        recorder.write(frame)
    with pytest.raises(RecordError, match=r"\.webm cannot hold H264.*mkv.*encode"):
        recorder.stop()
    assert recorder.stop().error is not None  # idempotent: reports, does not raise twice


def test_vp8_into_mp4_can_be_a_clear_error(tmp_path: Path) -> None:
    opts = RecordOptions(incompatible_video="error")
    recorder = Recorder(tmp_path / "x.mp4", options=opts).start()
    for frame in frames_for(PLAIN["VP8"])[:40]:
        recorder.write(frame)
    with pytest.raises(RecordError, match="cannot hold VP8"):
        recorder.stop()


def test_h264_into_webm_falls_back_to_reencoding_the_video_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fallback.webm"
    with caplog.at_level(logging.WARNING):
        stats = record(path, frames_for(PLAIN["H264"]))
    assert "re-encoding the video with libvpx" in caplog.text
    assert stats.transcoded_video and stats.video.codec == "libvpx"
    assert stats.audio.frames == 200 and stats.video.frames == 100
    assert_av_file(path, "vp8", 4.0)
    video_t, audio_t = mark_times(path)
    assert video_t is not None and audio_t is not None
    assert abs(video_t - MARK) < 0.021 and abs(audio_t - video_t) < 0.040


def test_unknown_extension_and_misuse() -> None:
    with pytest.raises(ValueError, match="unknown extension"):
        Recorder("out.avi")
    recorder = Recorder("unused.mkv")
    with pytest.raises(RecordError, match="start"):
        recorder.write(frames_for(PLAIN["H264"])[0])
    with pytest.raises(RecordError, match="encode"):
        recorder.write_video(av.VideoFrame(16, 16, "yuv420p"), 0.0)


def test_stop_is_idempotent_and_late_frames_are_counted(tmp_path: Path) -> None:
    frames = frames_for(PLAIN["H264"])
    with Recorder(tmp_path / "ctx.mkv") as recorder:
        for frame in frames[:100]:
            recorder.write(frame)
    first = recorder.stop()
    assert recorder.write(frames[100]) is False
    again = recorder.stop()
    assert first.closed and again.late_writes == 1
    assert again.video.frames == first.video.frames > 0


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_file_that_cannot_be_opened_fails_the_recording(
    tmp_path: Path, ext: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not "waiting for the next keyframe" (PyAV's OSError is an FFmpegError too, which the
    muxer takes for a keyframe it cannot parse): a read-only or full disk lost the recording
    silently, with a log that said no keyframe came."""
    path = tmp_path / f"taken.{ext}"
    path.mkdir()  # what stands where the file goes: opening it for writing fails (EISDIR)
    recorder = Recorder(path).start()
    for frame in frames_for(PLAIN["H264"])[:60]:
        recorder.write(frame)
    with (
        caplog.at_level(logging.DEBUG, logger="avatar_rtc.record"),
        pytest.raises(RecordError, match="Is a directory"),
    ):
        recorder.stop()
    assert isinstance(recorder.error, OSError)
    assert recorder.stop().error is not None  # raised once; the stats keep it
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(r.exc_info is None for r in errors)  # one line; the traceback is for -v
    assert "no video keyframe" not in caplog.text


async def test_the_writer_error_is_raised_by_the_stop_that_finds_the_file_finished(
    tmp_path: Path,
) -> None:
    path = tmp_path / "taken.mkv"
    path.mkdir()
    recorder = Recorder(path).start()
    for frame in frames_for(PLAIN["H264"])[:60]:
        recorder.write(frame)
    waiting = asyncio.ensure_future(recorder.astop())
    waiting.cancel()  # (a caller's timeout): the error is not lost with it
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(RecordError, match="Is a directory"):
        await recorder.astop()
    assert (await recorder.astop()).error is not None


def test_one_file_is_recorded_by_one_recorder_at_a_time(tmp_path: Path) -> None:
    first = Recorder(tmp_path / "same.mkv").start()
    with pytest.raises(RecordError, match="is being recorded already"):
        Recorder(tmp_path / "sub" / ".." / "same.mkv").start()
    first.stop()
    Recorder(tmp_path / "same.mkv").start().stop()  # once stopped, the path is free


def test_no_keyframe_means_no_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio_only = [f for f in frames_for(PLAIN["H264"]) if f.kind == "audio"][:50]
    with caplog.at_level(logging.WARNING):
        stats = record(tmp_path / "none.mkv", audio_only)
    assert not stats.started and not (tmp_path / "none.mkv").exists()
    assert caplog.text.count("nothing recorded to") == 1 and "no video keyframe" in caplog.text


def test_a_recording_stopped_before_any_frame_says_it_wrote_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Closed right after it started (no frame came at all): no file, and a warning (there
    was none: the muxer that would have said so was never opened)."""
    recorder = Recorder(tmp_path / "early.mkv").start()
    with caplog.at_level(logging.WARNING):
        assert not recorder.stop().started
        recorder.stop()  # said once
    assert not (tmp_path / "early.mkv").exists()
    assert caplog.text.count("nothing recorded to") == 1, caplog.text


def test_audio_only_recording(tmp_path: Path) -> None:
    audio_only = [f for f in frames_for(PLAIN["H264"]) if f.kind == "audio"]
    path = tmp_path / "audio.mkv"
    stats = record(path, audio_only, options=RecordOptions(video=False))
    assert stats.audio.frames == 215
    assert [s["codec_name"] for s in ffprobe_streams(path)] == ["opus"]


class FakePipeline:
    """The subscribe() contract of rtc.receiver.ReceivePipeline."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[EncodedFrame], None]] = []

    def subscribe(self, callback: Callable[[EncodedFrame], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def emit(self, frame: EncodedFrame) -> None:
        for callback in list(self.callbacks):
            callback(frame)


async def test_attach_and_astop_from_the_event_loop(tmp_path: Path) -> None:
    pipeline = FakePipeline()
    path = tmp_path / "attached.mp4"
    async with Recorder(path) as recorder:
        recorder.attach(pipeline)  # type: ignore[arg-type]  # subscribe() is all it uses
        for frame in frames_for(PLAIN["H264"]):
            pipeline.emit(frame)
            if frame.index % 50 == 0:
                await asyncio.sleep(0)
    assert pipeline.callbacks == []  # stop unsubscribed
    stats = recorder.stats()
    assert stats.closed and stats.video.frames == 100
    assert_av_file(path, "h264", 4.0)


def test_overflow_is_counted_logged_and_resyncs_on_keyframe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()

    class SlowMuxer(CopyMuxer):
        def write(self, frame: EncodedFrame) -> None:
            gate.wait(10)
            super().write(frame)

    monkeypatch.setattr(recorder_module, "CopyMuxer", SlowMuxer)
    frames = [f for f in frames_for(PLAIN["H264"]) if f.kind == "video"]
    recorder = Recorder(
        tmp_path / "slow.mkv", options=RecordOptions(audio=False, max_queue_items=10)
    )
    recorder.start()
    with caplog.at_level(logging.ERROR):
        accepted = [recorder.write(f) for f in frames[:30]]
    assert "writer is behind" in caplog.text
    # Up to 11 queued (one may be in the writer's hands), the rest refused; nothing silent.
    assert sum(accepted) <= 11 and recorder.stats().dropped == 30 - sum(accepted)
    gate.set()
    deadline = time.monotonic() + 10
    while recorder.stats().queued and time.monotonic() < deadline:
        time.sleep(0.01)
    for frame in frames[30:]:
        recorder.write(frame)
        while recorder.stats().queued >= 5:  # a writer that keeps up again
            time.sleep(0.001)
    stats = recorder.stop()
    # After the drop, video resumed only at the keyframe of frame 50: the file stays decodable.
    assert stats.video.frames == sum(accepted) + 50
    assert stats.dropped == 30 - sum(accepted) + 20
    assert decodes_cleanly(tmp_path / "slow.mkv") == ""


def test_jittered_duplicate_times_are_nudged_not_fatal(tmp_path: Path) -> None:
    frames = list(frames_for(PLAIN["H264"]))
    # Two video frames carrying the same presentation time (a clock hiccup).
    v = [i for i, f in enumerate(frames) if f.kind == "video"]
    frames[v[31]] = dataclasses.replace(
        frames[v[31]], presentation_time=frames[v[30]].presentation_time
    )
    stats = record(tmp_path / "dup.mp4", frames)
    assert stats.timestamp_fixups >= 1 and stats.error is None
    # (PyAV, not the ffmpeg CLI: its constant-rate output trips on frames 1/90000 s apart)
    with av.open(str(tmp_path / "dup.mp4")) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == stats.video.frames == 100


@pytest.mark.parametrize("ext", ["mkv", "webm"])
def test_nudged_times_stay_distinct_at_the_containers_resolution(tmp_path: Path, ext: str) -> None:
    """Matroska counts in milliseconds: frames 1/90000 s apart would share a timestamp there
    and ffmpeg would refuse to remux the file ("non monotonically increasing dts")."""
    codec = "H264" if ext == "mkv" else "VP8"
    frames = list(frames_for(PLAIN[codec]))
    v = [i for i, f in enumerate(frames) if f.kind == "video"]
    for k in (31, 32):  # a burst: three frames within 0.1 ms (arrival timing under load)
        frames[v[k]] = dataclasses.replace(
            frames[v[k]], presentation_time=frames[v[30]].presentation_time + k * 1e-5
        )
    stats = record(tmp_path / f"burst.{ext}", frames)
    assert stats.timestamp_fixups >= 2 and stats.error is None
    assert decodes_cleanly(tmp_path / f"burst.{ext}") == ""
