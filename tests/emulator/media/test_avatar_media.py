"""AvatarMedia end to end: speech in the received picture and sound, interrupt, PLI, loss."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import wave
from collections.abc import AsyncIterator

import numpy as np
import pytest

from avatar_rtc.emulator.media import AvatarMedia, AvatarMediaOptions, SentFrame
from avatar_rtc.rtc import aiortc_seam as seam
from tests.emulator.media.harness import (
    AudioSample,
    VideoSample,
    Viewer,
    connect_viewer,
    whep_server,
)
from tests.support import require_tool, wait_until

pytestmark = pytest.mark.timeout(60)

TEXT = "Hello there, how are you today?"
RATES = {"video": 90_000, "audio": 48_000}  # RTP clocks


def _kinds(media: AvatarMedia, turn: str) -> list[str]:
    return [e.kind for e in media.events(turn)]


class _MediaTimes:
    """A received frame's time on the emulator's media clock.

    aiortc's viewer counts ``pts`` from its first frame of each kind, which is the first one
    the emulator sent it (loopback: nothing lost).
    """

    def __init__(self, sent: list[SentFrame]) -> None:
        self._first = {k: next(f.media_time for f in sent if f.kind == k) for k in RATES}

    def video(self, sample: VideoSample) -> float:
        return self._first["video"] + sample.pts / RATES["video"]

    def audio(self, sample: AudioSample) -> float:
        return self._first["audio"] + sample.pts / RATES["audio"]

    def count_from(self, viewer: Viewer, media_time: float) -> int:
        """Frames of the scarcer kind received from ``media_time`` on."""
        video = sum(1 for s in viewer.video if self.video(s) >= media_time)
        audio = sum(1 for s in viewer.audio if self.audio(s) >= media_time)
        return min(video, audio)


@contextlib.asynccontextmanager
async def _watching(media: AvatarMedia) -> AsyncIterator[Viewer]:
    """``media`` served over WHEP with a plain aiortc viewer connected and receiving."""
    async with whep_server({"s": media}) as srv:
        viewer = await connect_viewer(srv.url("s"))
        assert viewer.status == 201
        try:
            await viewer.wait_video(3)
            await viewer.wait_audio(5)
            yield viewer
        finally:
            await viewer.close()


@pytest.mark.slow
async def test_speech_opens_mouth_and_raises_audio_then_idle() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    sent: list[SentFrame] = []
    media.on_frame_sent = sent.append
    async with _watching(media) as viewer:
        assert max(s.opening for s in viewer.video) < 0.05  # idle: closed
        await media.say_text(TEXT, turn_id="t1", is_final=True)
        await wait_until(lambda: media.speaking, 10.0)
        await wait_until(lambda: "turn_end" in _kinds(media, "t1"), 20.0)
        assert not media.speaking
        start = media.events("t1", "turn_start")[0].media_time
        end = media.events("t1", "turn_end")[0].media_time
        # On the media clock: how late frames reach the viewer depends on how busy it is.
        timed = _MediaTimes(sent)
        await wait_until(lambda: timed.count_from(viewer, end + 0.35) >= 5, 10.0)

        during_v = [s.opening for s in viewer.video if start <= timed.video(s) <= end]
        during_a = [s.rms_db for s in viewer.audio if start <= timed.audio(s) <= end]
        assert max(during_v) > 0.5
        assert sum(1 for o in during_v if o > 0.15) > 10
        assert max(during_a) > -30
        tail = [s.opening for s in viewer.video if timed.video(s) >= end + 0.35]
        assert tail and max(tail) < 0.05
        assert max(s.rms_db for s in viewer.audio if timed.audio(s) >= end + 0.35) < -50

        kinds = _kinds(media, "t1")
        assert kinds == ["queued", "turn_start", "audio_onset", "mouth_open", "turn_end"]
        onset = media.events("t1", "audio_onset")[0]
        mouth = media.events("t1", "mouth_open")[0]
        assert 0.0 <= mouth.media_time - onset.media_time < 0.12
        for event in (onset, mouth):
            assert event.rtp_timestamp is not None and event.sent_monotonic is not None
        assert onset.frame_kind == "audio" and mouth.frame_kind == "video"
        # The ring of sent frames / hook for latency benchmarks.
        assert sent and {f.kind for f in sent} == {"audio", "video"}
        assert media.sent_frames[-1] == sent[-1]
        assert media.stats.video_frames > 20


async def test_interrupt_stops_speech() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    sent: list[SentFrame] = []
    media.on_frame_sent = sent.append
    async with _watching(media) as viewer:
        await media.say_text(TEXT * 3, turn_id="long", is_final=True)
        await media.say_text(TEXT, turn_id="next", is_final=True)
        await wait_until(lambda: media.events("long", "mouth_open"), 10.0)
        await asyncio.sleep(0.3)
        media.interrupt()
        assert not media.speaking
        stopped = media.events("long", "interrupted")[0].media_time
        timed = _MediaTimes(sent)
        await wait_until(lambda: timed.count_from(viewer, stopped + 0.3) >= 5, 10.0)
        after = [s.opening for s in viewer.video if timed.video(s) >= stopped + 0.3]
        assert after and max(after) < 0.05
        assert max(s.rms_db for s in viewer.audio if timed.audio(s) >= stopped + 0.3) < -50
        assert "interrupted" in _kinds(media, "long")
        assert _kinds(media, "next") == ["queued"]  # dropped from the queue


async def test_pli_forces_a_keyframe_quickly() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin", keyframe_interval=10.0))
    async with _watching(media) as viewer:
        await viewer.wait_video(15)
        assert media.stats.keyframes == 1  # only the first picture
        (emu_viewer,) = media.viewers.values()
        video_sender = emu_viewer.pc.getTransceivers()[0].sender
        receiver = viewer.pc.getTransceivers()[0].receiver
        asked = time.monotonic()
        await seam.send_pli(receiver, seam.sender_ssrc(video_sender))
        await wait_until(lambda: media.stats.keyframes == 2, 10.0)
        await wait_until(lambda: any(s.key_frame for s in viewer.video_since(asked)), 10.0)
        first_key = next(s for s in viewer.video_since(asked) if s.key_frame)
        # The next frame (40 ms) + transport; the periodic keyframe is 10 s away: half of
        # that leaves room for a busy machine.
        assert first_key.at - asked < 5.0
        assert emu_viewer.pli_count == 1


@pytest.mark.parametrize("fps", [25, 30])
async def test_sessions_send_their_frames_at_the_same_instants(fps: int) -> None:
    # Two sessions started 13 ms apart: their media clocks start on one grid of the monotonic
    # clock (40 ms at 25 fps, 100 ms at 30), so frame k of each is due at the same instants.
    grid = {25: 0.04, 30: 0.1}[fps]
    medias = {name: AvatarMedia(AvatarMediaOptions(tts="builtin", fps=fps)) for name in "ab"}
    async with whep_server(medias) as srv:
        viewers = []
        try:
            for name in "ab":
                viewers.append(await connect_viewer(srv.url(name)))
                await asyncio.sleep(0.013)
            for viewer in viewers:
                await viewer.wait_video(10)
            starts = [media.capture_time(0.0) for media in medias.values()]
        finally:
            for viewer in viewers:
                await viewer.close()
    for start in starts:
        assert abs(start / grid - round(start / grid)) < 1e-6


async def test_dropped_video_packets_are_repaired_by_nack() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin", keyframe_interval=10.0))
    async with _watching(media) as viewer:
        (emu_viewer,) = media.viewers.values()
        media.drop_next_video_packets(2)
        marked = len(viewer.video)
        await wait_until(lambda: emu_viewer.tap.dropped_video == 2, 10.0)
        await viewer.wait_video(marked + 20, within=5.0)
        assert media.stats.keyframes == 1  # repaired by retransmission, not by a new keyframe


def _tone_wav(seconds: float) -> bytes:
    rate = 22050
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.4 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


async def _speak_without_viewer(media: AvatarMedia, turn: str, within: float) -> None:
    await wait_until(lambda: "turn_end" in _kinds(media, turn), within)
    kinds = _kinds(media, turn)
    assert kinds[-4:] == ["turn_start", "audio_onset", "mouth_open", "turn_end"]
    # Nobody watched: nothing was rendered or encoded, nothing was sent.
    assert media.stats.video_frames == 0 and media.stats.audio_frames == 0
    assert all(e.rtp_timestamp is None for e in media.events(turn))


async def test_builtin_espeak_audio_and_chunked_turns_without_viewer() -> None:
    builtin = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    uploaded = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    try:
        # Non-final chunks of one turn play back to back as one turn.
        await builtin.say_text("Hello", turn_id="b", is_final=False)
        await builtin.say_text("world.", turn_id="b", is_final=True)
        await uploaded.say_audio(_tone_wav(0.6), duration=0.6, turn_id="u", filename="t.wav")
        checks = [
            _speak_without_viewer(builtin, "b", 6.0),
            _speak_without_viewer(uploaded, "u", 4.0),
        ]
        assert builtin.synthesizer_name == "builtin"
        await asyncio.gather(*checks)
        assert _kinds(builtin, "b").count("turn_start") == 1
    finally:
        await builtin.close()
        await uploaded.close()


async def test_espeak_speech_without_viewer() -> None:
    require_tool("espeak-ng")
    media = AvatarMedia(AvatarMediaOptions(tts="espeak-ng"))
    try:
        assert media.synthesizer_name == "espeak-ng"
        await media.say_text("Hello world.", turn_id="e", is_final=True)
        await _speak_without_viewer(media, "e", 6.0)
    finally:
        await media.close()


async def test_closed_media_refuses() -> None:
    media = AvatarMedia()
    await media.start()
    await media.close()
    await media.close()  # idempotent
    assert media.closed
