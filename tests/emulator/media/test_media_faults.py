"""Injected media faults change what the avatar sends exactly as armed, and are logged as truth.

Most tests drive an ``AvatarMedia`` one 20 ms tick at a time (no clock task, no network) and
read what it would send at the encoders: the sound (before Opus), the video frames asked for
(time, mouth, what to do) and the encoded packets, decoded again where pixels matter.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from avatar_rtc.cli import emulator_cmd
from avatar_rtc.cli.main import build_parser
from avatar_rtc.emulator.media import (
    AvatarMedia,
    AvatarMediaOptions,
    FaultWindow,
    FpsDrop,
    MediaFaults,
    TimelineEvent,
)
from avatar_rtc.emulator.media.audio_decode import SAMPLE_RATE
from avatar_rtc.emulator.media.encoder import (
    AUDIO_FRAME,
    CODEC_DELAY,
    VIDEO_CLOCK,
    AudioEncoder,
    EncodedPacket,
    VideoEncoder,
)
from avatar_rtc.emulator.media.envelope import opening_for, rms_dbfs
from avatar_rtc.emulator.media.face import FaceRenderer
from avatar_rtc.emulator.media.media_faults import parse_fps_drop, parse_window
from avatar_rtc.emulator.media.speech import Segment
from avatar_rtc.emulator.media.timeline import Timeline
from avatar_rtc.emulator.media.tracks import PacketTrack
from avatar_rtc.qa.video import VideoAnalyser
from tests.emulator.helpers import Api
from tests.emulator.media.harness import connect_viewer, whep_server
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

FPS = 25
FRAME = 1 / FPS
TICK = AUDIO_FRAME / SAMPLE_RATE


def syllables(seconds: float = 3.0, *, on: float = 0.18, off: float = 0.12) -> np.ndarray:
    """Speech-like bursts: a 220 Hz buzz on for ``on`` s, silent for ``off`` s, in turn."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    gate = (t % (on + off)) < on
    level = 0.25 + 0.15 * np.sin(2 * np.pi * t * 1.3)  # the loudness varies too
    return (gate * level * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32)


class _Inline(Executor):
    """Runs the encode job at once, on the loop's thread (deterministic, no thread)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class Driven:
    """An AvatarMedia with one (fake) viewer, advanced tick by tick.

    ``sound``: the samples handed to the Opus encoder, by audio frame index; ``jobs``: the video
    frames handed to the renderer; ``video`` / ``audio``: the encoded packets.
    """

    def __init__(self, faults: MediaFaults | None = None, **options: Any) -> None:
        self.media = AvatarMedia(AvatarMediaOptions(tts="builtin", **options))
        if faults is not None:
            self.media.inject_faults(faults)
        self.sound: dict[int, np.ndarray] = {}
        self.jobs: list[Any] = []
        self.video: list[EncodedPacket] = []
        self.audio: list[EncodedPacket] = []
        media = self.media
        for tracks, track in (
            (media._video_tracks, PacketTrack("video", maxsize=10_000)),
            (media._audio_tracks, PacketTrack("audio", maxsize=10_000)),
        ):
            track.started = True  # as if a sender were pulling
            tracks.append(track)
        media._executor = _Inline()  # type: ignore[assignment]
        encode = media._encode_tick

        def recording(pcm: Any, n: int, frames: list[Any]) -> Any:
            audio, video = encode(pcm, n, frames)
            if pcm is not None:
                self.sound[n] = pcm.copy()
            self.jobs.extend(frames)
            self.audio.extend(audio)
            self.video.extend(video)
            return audio, video

        media._encode_tick = recording  # type: ignore[method-assign,assignment]

    def say(self, pcm: np.ndarray, turn: str = "t1") -> None:
        self.media._player.enqueue(Segment(turn, pcm))

    async def run(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK)):
            self.media._tick()
            for _ in range(3):  # the future's result, then _deliver, reach the loop
                await asyncio.sleep(0)

    def event(self, kind: str, fault: str | None = None) -> TimelineEvent:
        found = [e for e in self.media.timeline if e.kind == kind and e.fault == fault]
        assert len(found) == 1, (kind, fault, self.media.timeline)
        return found[0]

    def heard(self) -> tuple[float, np.ndarray]:
        """(media time of the first sample as heard, all the sound sent from there on)."""
        first = min(self.sound)
        pcm = np.concatenate([self.sound[n] for n in sorted(self.sound)])
        return (first * AUDIO_FRAME + CODEC_DELAY) / SAMPLE_RATE, pcm

    def frame_times(self) -> list[float]:
        return [round((p.pts or 0) / VIDEO_CLOCK, 6) for p in self.video]

    def decoded_luma(self) -> dict[float, np.ndarray]:
        """The Y plane of every video frame sent, decoded, by media time."""
        decoder = av.CodecContext.create("h264", "r")
        out: dict[float, np.ndarray] = {}
        for packet in self.video:
            for frame in decoder.decode(packet):
                y = frame.to_ndarray(format="gray")
                out[round((frame.pts or 0) / VIDEO_CLOCK, 6)] = y
        return out


def _window_truth(d: Driven, name: str) -> tuple[float, float]:
    start, end = d.event("fault_start", name), d.event("fault_end", name)
    return start.media_time, end.media_time - start.media_time


# --- arming ---------------------------------------------------------------------------------


def test_windows_and_settings_are_checked() -> None:
    assert parse_window("1.0:0.7") == FaultWindow(1.0, 0.7)
    assert parse_fps_drop("2:1.5:5") == FpsDrop(2.0, 1.5, 5.0)
    for bad in ("1.0", "a:b", "-1:0.5", "1:0"):
        with pytest.raises(ValueError):
            parse_window(bad)
    with pytest.raises(ValueError):
        MediaFaults(av_offset_ms=2500)
    with pytest.raises(ValueError):
        MediaFaults(video_packet_loss=1.0)


async def test_windows_start_after_the_next_turn_starts_and_happen_once() -> None:
    d = Driven(MediaFaults(black=FaultWindow(0.5, 0.2)))
    await d.run(1.0)  # idle: the window waits for a turn
    assert not [e for e in d.media.timeline if e.kind == "fault_start"]
    d.say(syllables(1.0))
    await d.run(1.5)
    turn_start = d.event("turn_start")
    start, length = _window_truth(d, "black")
    # The first frame at or after turn start + 0.5 s; five 40 ms frames.
    assert start == pytest.approx(np.ceil((turn_start.media_time + 0.5) / FRAME) * FRAME)
    assert length == pytest.approx(0.2)
    d.say(syllables(1.0), "t2")  # a second turn: the window does not come back
    await d.run(1.5)
    assert len([e for e in d.media.timeline if e.kind == "fault_start"]) == 1


# --- A/V offset and the mouth's timing ------------------------------------------------------


@pytest.mark.parametrize("offset_ms", [-200, -40, 0, 80, 200])
async def test_av_offset_shifts_the_mouth_against_the_sound_exactly(offset_ms: int) -> None:
    d = Driven(MediaFaults(av_offset_ms=offset_ms))
    d.say(syllables(2.0))
    await d.run(3.0)
    first, pcm = d.heard()
    half = AUDIO_FRAME  # the mouth shows the level of 2 x 20 ms of sound around its time

    def level_seen(t: float) -> float:
        """The opening the sound heard around ``t`` would give."""
        i = round((t - first) * SAMPLE_RATE)
        window = pcm[max(i - half, 0) : max(i + half, 0)]
        return opening_for(rms_dbfs(window)) if window.size else 0.0

    times = np.array([j.time for j in d.jobs])
    openings = np.array([j.opening for j in d.jobs])
    assert openings.max() > 0.5
    # The picture at t shows the sound heard at t - offset: exactly, frame by frame.
    seen = np.array([level_seen(t - offset_ms / 1000) for t in times])
    np.testing.assert_allclose(openings, seen, atol=1e-6)
    # ... and at no other shift.
    other = np.array([level_seen(t - (offset_ms + 20) / 1000) for t in times])
    assert np.abs(openings - other).max() > 0.1
    # Truth on the timeline: the armed offset, and the mouth opening against the sound.
    assert d.event("fault_set", "av_offset_ms").value == offset_ms
    lag = d.event("mouth_open").media_time - d.event("turn_start").media_time
    assert lag == pytest.approx(offset_ms / 1000, abs=FRAME)


def test_opus_delays_the_sound_by_codec_delay() -> None:
    """What the emulator compensates: libopus hears a sample CODEC_DELAY samples late."""
    encoder = AudioEncoder()
    decoder = av.CodecContext.create("opus", "r")
    click_at = 5 * AUDIO_FRAME + 480
    out = []
    for n in range(12):
        pcm = np.zeros(AUDIO_FRAME, dtype=np.float32)
        if n == 5:
            pcm[480:576] = 0.8 * np.sin(np.arange(96) / 96 * 8 * np.pi)
        for packet in encoder.encode(pcm, n):
            for frame in decoder.decode(packet):
                samples = frame.to_ndarray()  # (channels, n) planar, (1, n * channels) packed
                out.append(samples[0] if frame.format.is_planar else samples[0, ::2])
    heard = np.flatnonzero(np.abs(np.concatenate(out)) > 0.05)[0]
    assert heard - click_at == pytest.approx(CODEC_DELAY, abs=2)


# --- video windows --------------------------------------------------------------------------


async def test_freeze_by_repeated_frames_sends_the_same_picture() -> None:
    d = Driven(MediaFaults(freeze_repeated=FaultWindow(0.3, 0.7)))
    d.say(syllables(2.0))
    await d.run(2.0)
    start, length = _window_truth(d, "freeze_repeated")
    assert length == pytest.approx(0.68) or length == pytest.approx(0.72)  # whole frames
    times = d.frame_times()
    assert np.allclose(np.diff(times), FRAME)  # every frame is still sent
    luma = d.decoded_luma()
    before = luma[round(start - FRAME, 6)]
    frozen = [y for t, y in luma.items() if start - 1e-6 <= t < start + length - 1e-6]
    assert len(frozen) == round(length / FRAME)
    for y in frozen:  # the last picture before the window, again (up to codec noise)
        assert np.abs(y.astype(int) - before).mean() < 0.5
    after = luma[round(start + length, 6)]
    assert np.abs(after.astype(int) - before).max() > 50  # the eyes (at least) moved on
    assert d.media.stats.video_frames_withheld == 0


async def test_freeze_by_withheld_frames_sends_no_frame() -> None:
    d = Driven(MediaFaults(freeze_withheld=FaultWindow(0.3, 0.7)))
    d.say(syllables(2.0))
    await d.run(2.0)
    start, length = _window_truth(d, "freeze_withheld")
    times = np.array(d.frame_times())
    gaps = np.diff(times)
    assert np.count_nonzero(gaps > FRAME + 1e-6) == 1  # one hole in the timestamps ...
    hole = int(np.argmax(gaps))
    assert times[hole + 1] == pytest.approx(start + length)  # ... from start to end
    assert gaps[hole] == pytest.approx(length + FRAME)
    assert d.media.stats.video_frames_withheld == round(length / FRAME)
    # The truth events carry the RTP time of the frames as (would have been) sent.
    event = d.event("fault_start", "freeze_withheld")
    assert event.pts == round(start * VIDEO_CLOCK)


async def test_black_frames_are_black() -> None:
    d = Driven(MediaFaults(black=FaultWindow(0.2, 0.5)))
    d.say(syllables(1.5))
    await d.run(1.5)
    start, length = _window_truth(d, "black")
    assert length == pytest.approx(0.48) or length == pytest.approx(0.52)
    for t, y in d.decoded_luma().items():
        black = start - 1e-6 <= t < start + length - 1e-6
        dark = np.count_nonzero(y <= 25) / y.size  # blackdetect: 10 % of full scale
        assert (dark > 0.98) == black, t


async def test_fps_drop_sends_fewer_frames_on_the_same_clock() -> None:
    d = Driven(MediaFaults(fps_drop=FpsDrop(0.2, 1.0, 5.0)))
    d.say(syllables(1.5))
    await d.run(2.0)
    start, length = _window_truth(d, "fps_drop")
    assert d.event("fault_start", "fps_drop").value == 5.0
    inside = [t for t in d.frame_times() if start - 1e-6 <= t < start + length - 1e-6]
    assert len(inside) == 5  # 1 s at 5 fps
    assert np.allclose(np.diff(inside), 0.2)  # one frame every 200 ms, timestamps unchanged
    assert d.media.stats.video_frames_withheld == round(length / FRAME) - 5


# --- audio windows and speech delay ---------------------------------------------------------


async def test_audio_dropout_is_digital_silence_inside_speech() -> None:
    speech = np.full(2 * SAMPLE_RATE, 0.3, dtype=np.float32)  # loud throughout
    d = Driven(MediaFaults(audio_dropout=FaultWindow(0.5, 0.6)))
    d.say(speech)
    await d.run(3.0)
    start, length = _window_truth(d, "audio_dropout")
    turn = d.event("turn_start").media_time
    assert start == pytest.approx(turn + 0.5, abs=1e-9)  # sample exact, not frame aligned
    assert length == pytest.approx(0.6, abs=1e-9)
    first, pcm = d.heard()
    a, b = round((start - first) * SAMPLE_RATE), round((start + length - first) * SAMPLE_RATE)
    assert not pcm[a:b].any()
    assert (pcm[a - 100 : a] == 0.3).all() and (pcm[b : b + 100] == 0.3).all()
    # The mouth goes on talking through it (a dropout, not a pause).
    assert min(j.opening for j in d.jobs if start + 0.05 < j.time < start + length - 0.05) > 0.5


async def test_withheld_audio_sends_no_packet() -> None:
    d = Driven(MediaFaults(audio_withheld=FaultWindow(0.5, 0.6)))
    d.say(syllables(2.0))
    await d.run(2.5)
    start, length = _window_truth(d, "audio_withheld")
    heard = [((p.pts or 0) + CODEC_DELAY) / SAMPLE_RATE for p in d.audio]
    assert not [t for t in heard if start - 1e-6 <= t < start + length - 1e-6]
    assert d.media.stats.audio_frames_withheld == 30  # 0.6 s of 20 ms frames
    assert max(np.diff(heard)) == pytest.approx(length + TICK)


async def test_speech_delay_starts_sound_and_mouth_that_much_later() -> None:
    d = Driven(MediaFaults(speech_delay_ms=1500))
    d.say(syllables(1.0))
    await d.run(3.5)
    due, started = d.event("fault_start", "speech_delay"), d.event("turn_start")
    assert d.event("fault_end", "speech_delay").media_time == started.media_time
    assert started.media_time - due.media_time == pytest.approx(1.5, abs=1e-9)
    first, pcm = d.heard()
    audible = np.flatnonzero(pcm)[0] / SAMPLE_RATE + first
    assert audible == pytest.approx(started.media_time, abs=2 / SAMPLE_RATE)  # sin(0) is 0
    mouth = min(j.time for j in d.jobs if j.opening > 0)
    assert started.media_time - FRAME <= mouth <= started.media_time + FRAME


async def test_packet_loss_reaches_the_viewers() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    async with whep_server({"s": media}) as server:
        viewer = await connect_viewer(server.url("s"))
        try:
            await viewer.wait_video(3)
            (sender,) = media.viewers.values()
            assert sender.tap.video_loss == 0.0
            media.inject_faults(MediaFaults(video_packet_loss=0.2))
            assert sender.tap.video_loss == 0.2
            await wait_until(lambda: sender.tap.dropped_video >= 5, 10.0)
        finally:
            await viewer.close()
    loss = [e for e in media.timeline if e.fault == "video_packet_loss"]
    assert loss[-1].kind == "fault_set" and loss[-1].value == 0.2


# --- truth on the timeline, the clock, the idle face ----------------------------------------


def test_an_event_on_a_frame_never_sent_gets_the_rtp_time_it_would_have_had() -> None:
    timeline = Timeline()
    withheld = timeline.add(
        "fault_start", "t", 1.0, frame_kind="video", pts=90_000, await_send=True
    )
    timeline.frame_sent("video", 93_600, 1_000_000, VIDEO_CLOCK)  # the next frame sent
    assert withheld.rtp_timestamp == 1_000_000 - 3_600
    assert withheld.sent_monotonic is None


async def test_a_stalled_loop_skips_media_time_instead_of_moving_the_clock() -> None:
    # Sender reports pair RTP time with the media clock: the clock must keep pace with the
    # wall clock even when the loop is held up, or receivers would misalign audio and video.
    d = Driven()
    media = d.media
    await media.start()
    try:
        await asyncio.sleep(0.3)
        began = time.monotonic() - media.media_time
        time.sleep(0.6)  # noqa: ASYNC251  # the stall under test
        await asyncio.sleep(0.2)
        assert media.stats.clock_skips >= 1
        assert media.stats.skipped_seconds >= 0.5
        # Re-based, the clock would now trail the wall clock by the whole stall (0.6 s); it
        # keeps pace instead (within what it may lag before skipping, MAX_LATE).
        assert time.monotonic() - media.media_time == pytest.approx(began, abs=0.3)
        # No burst of late frames either: their timestamps jump over the stall.
        assert np.diff(d.frame_times()).max() >= 0.5
    finally:
        await media.close()


def test_the_idle_face_is_a_new_picture_every_frame() -> None:
    """QA's freeze rule ignores (nearly) identical frames: the face between turns must move."""
    renderer = FaceRenderer(512, 512)
    encoder = VideoEncoder("H264", 512, 512, FPS)
    decoder = av.CodecContext.create("h264", "r")
    analyser = VideoAnalyser()
    n = 250  # 10 s: two blinks, four turns of the eyes
    for k in range(n):
        for packet in encoder.encode(renderer.render(0.0, t=k * FRAME), k, k % 50 == 0):
            for out in decoder.decode(packet):
                small = out.reformat(320, 320, format="gray", interpolation="AREA")
                analyser.feed(small.to_ndarray().astype(np.uint8), k * FRAME)
    result = analyser.result()
    assert result.freezes == []
    assert result.new_frames == result.frames == n


# --- from the command line ------------------------------------------------------------------


async def test_emulator_flags_arm_every_session() -> None:
    args = build_parser().parse_args(
        [
            "emulator",
            "--port",
            "0",
            "--av-offset",
            "-120",
            "--freeze-withheld",
            "1.0:0.7",
            "--fps-drop",
            "2:1:5",
            "--packet-loss",
            "2.5",
        ]
    )
    assert isinstance(args, argparse.Namespace)
    emulator = emulator_cmd._build(args)
    async with emulator, aiohttp.ClientSession() as http:
        api = Api(emulator, http)
        session_id, token = await api.create()
        assert (await api.call(session_id, token, "init-client")).status == 200  # media starts
        faults = emulator.avatar_media(session_id).faults
    assert faults == MediaFaults(
        av_offset_ms=-120,
        video_packet_loss=0.025,
        freeze_withheld=FaultWindow(1.0, 0.7),
        fps_drop=FpsDrop(2.0, 1.0, 5.0),
    )


def test_bad_fault_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["emulator", "--black", "1.0"])
    assert exit_info.value.code == 2
    assert "START:LENGTH" in capsys.readouterr().err
