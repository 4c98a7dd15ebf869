"""AvatarSession against the in-process emulator on 127.0.0.1.

One emulator and one shared session per module (connecting costs ~0.2 s, the speech tests
several seconds); the exit-path tests open sessions of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from avatar_rtc.api import ControlClient
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import (
    MARKERS,
    AvatarMedia,
    FaultWindow,
    MediaFaults,
    markers_for,
    mouth_opening,
)
from avatar_rtc.errors import AvatarRTCError, ConfigurationError, MediaLostError, ServerError
from avatar_rtc.media.decoder import decoder_for
from avatar_rtc.media.formats import AudioFormat, VideoFormat
from avatar_rtc.options import SessionOptions
from avatar_rtc.record.options import RecordOptions
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.reconnect import ReconnectPolicy
from avatar_rtc.session import AvatarSession, SessionClosedError, SessionEvent, SessionStateError
from avatar_rtc.session_stats import SessionState
from avatar_rtc.speech_detector import SpeechDetector, rms_dbfs
from tests.support import LOOPBACK_ICE, emulator_options

pytestmark = pytest.mark.asyncio(loop_scope="module")

RGB = {m.name: m.rgb for m in MARKERS}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


class Events:
    def __init__(self) -> None:
        self.log: list[SessionEvent] = []

    def __call__(self, event: SessionEvent) -> None:
        self.log.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.log]

    def of(self, name: str) -> list[SessionEvent]:
        return [e for e in self.log if e.name == name]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(emu: Emulator) -> AsyncIterator[tuple[AvatarSession, Events]]:
    session = AvatarSession(emulator_options(emu))
    events = Events()
    for name in ("state", "connected", "first_frame", "speaking_started", "speaking_ended"):
        session.on(name, events)
    async with session:
        yield session, events


async def wait_for(pred: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def marker_rgb(
    img: np.ndarray[Any, Any], name: str, w: int = 512, h: int = 512
) -> np.ndarray[Any, Any]:
    marker = next(m for m in markers_for(w, h) if m.name == name)
    rows, cols = marker.region(inset=8)
    return img[rows, cols].reshape(-1, img.shape[-1]).mean(axis=0)  # type: ignore[no-any-return]


# --- connect, first frame, events --------------------------------------------------------


async def test_first_frame_markers_events_and_timings(
    shared: tuple[AvatarSession, Events],
) -> None:
    session, events = shared
    first = await session.wait_first_frame(10)
    img = first.to_ndarray()
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    for name, rgb in RGB.items():
        assert np.abs(marker_rgb(img, name) - rgb).max() < 12, name

    assert session.state is SessionState.CONNECTED
    assert session.session_id and session.whep_url and session.whep_url.endswith(session.session_id)
    states = [e.data for e in events.of("state")]
    assert states[:2] == [SessionState.CONNECTING, SessionState.CONNECTED]
    assert events.names().count("connected") == 1
    assert [e.data for e in events.of("first_frame")] == [first]

    t = session.timings
    phases = (t.session, t.offer_answer, t.ice_dtls, t.first_keyframe, t.first_frame)
    assert all(p is not None and p >= 0 for p in phases), t
    assert t.total is not None and t.total >= sum(p for p in phases if p is not None) - 0.01
    pair = session.selected_pair
    assert pair is not None and pair.local_address[0] == "127.0.0.1"
    assert pair.local_type == "host"


async def test_formats_sizes_and_yuv_planes(shared: tuple[AvatarSession, Events]) -> None:
    session, _ = shared
    streams = {
        "bgr24": session.video(VideoFormat("bgr24")),
        "rgba": session.video(VideoFormat("rgba")),
        "gray": session.video(VideoFormat("gray")),
        "yuv": session.video(VideoFormat(pixel_format=None)),
        "small": session.video(VideoFormat(size=(256, 128))),
    }
    try:
        frames = {k: await asyncio.wait_for(s.recv(), 5) for k, s in streams.items()}
    finally:
        for s in streams.values():
            s.close()

    bgr = frames["bgr24"].array
    assert bgr.shape == (512, 512, 3) and bgr.dtype == np.uint8
    assert np.abs(marker_rgb(bgr, "red") - (0, 0, 255)).max() < 12
    assert np.abs(marker_rgb(bgr, "blue") - (255, 0, 0)).max() < 12

    rgba = frames["rgba"].array
    assert rgba.shape == (512, 512, 4) and rgba.dtype == np.uint8
    assert np.abs(marker_rgb(rgba, "green") - (0, 255, 0, 255)).max() < 12

    gray = frames["gray"].array
    assert gray.shape == (512, 512) and gray.dtype == np.uint8
    white = next(m for m in MARKERS if m.name == "white").region(inset=8)
    red = next(m for m in MARKERS if m.name == "red").region(inset=8)
    assert gray[white].mean() > 240 and 60 < gray[red].mean() < 95  # BT.601 luma of red: 76
    assert abs(float(gray[250:260, 5:15].mean()) - 128) < 10  # background

    y, u, v = frames["yuv"].yuv_planes()
    assert y.shape == (512, 512) and u.shape == v.shape == (256, 256)
    assert all(p.dtype == np.uint8 for p in (y, u, v))
    assert 70 < y[red].mean() < 95 and v[10:20, 10:20].mean() > 220  # red: high V

    small = frames["small"].array
    assert small.shape == (128, 256, 3) and small.dtype == np.uint8
    # the 64x64 markers scaled with the picture to 32x16
    assert np.abs(small[4:12, 4:28].reshape(-1, 3).mean(axis=0) - (255, 0, 0)).max() < 20
    assert np.abs(small[4:12, -28:-4].reshape(-1, 3).mean(axis=0) - (0, 255, 0)).max() < 20
    assert np.abs(small[-12:-4, -28:-4].reshape(-1, 3).mean(axis=0) - 255).max() < 20


async def test_audio_16k_mono_sample_counts(shared: tuple[AvatarSession, Events]) -> None:
    session, _ = shared
    stream = session.audio(AudioFormat(sample_rate=16000, channels=1, frame_ms=20))
    try:
        frames = [await asyncio.wait_for(stream.recv(), 5) for _ in range(5)]  # warm up
        while stream.stats().queued:  # a backlog (a busy machine) would come out in a burst
            await stream.recv()
        t0 = time.monotonic()
        frames = [await asyncio.wait_for(stream.recv(), 5) for _ in range(50)]
        elapsed = time.monotonic() - t0
    finally:
        stream.close()
    assert all(f.data.shape == (320, 1) and f.data.dtype == np.int16 for f in frames)
    assert all(f.sample_rate == 16000 for f in frames)
    assert sum(f.samples for f in frames) == 16000  # one second of audio
    steps = np.diff([f.presentation_time for f in frames])
    assert np.allclose(steps, 0.02, atol=1e-6)  # gapless, contiguous
    assert elapsed > 0.5  # paced by the sender in real time, not a backlog in a burst


async def test_slow_consumer_drops_under_latest(shared: tuple[AvatarSession, Events]) -> None:
    session, _ = shared
    stream = session.video(policy="latest", capacity=2)
    # Every decoded frame, seen after the stream's own sink (added first) got it.
    decoded: list[int] = []
    remove = decoder_for(session.video_pipeline).add_sink(lambda d: decoded.append(d.encoded.index))
    try:
        await asyncio.wait_for(stream.recv(), 5)
        # 25 fps arrive, nobody reads (the wait only guards a hang)
        await wait_for(lambda: stream.stats().dropped >= 10, 30)
        stats = session.stats()
        mine = [s for s in stats.streams if s.kind == "video" and s.queued == 2]
        assert mine and mine[-1].dropped >= 10
        assert stats.stream_drops >= mine[-1].dropped
        newest = decoded[-1]
        latest = await asyncio.wait_for(stream.recv(), 5)
        assert latest.index >= newest - 1  # one of the two newest decoded: no backlog
    finally:
        remove()
        stream.close()
    assert stats.video.packets > 0 and stats.video.frames > 0 and stats.video.keyframes >= 1
    assert stats.playout_delay_s is None  # no playout stage by default
    assert stats.audio.packets > 0 and stats.audio.codec == "opus"
    assert stats.video.codec == "H264"
    assert stats.keep_alive is not None and stats.connection_state == "connected"


@pytest.mark.slow
async def test_say_speaking_events_and_mouth(shared: tuple[AvatarSession, Events]) -> None:
    session, events = shared
    stream = session.video(VideoFormat(size=(256, 256)), policy="all", capacity=300)
    openings: list[tuple[float, float]] = []  # (presentation time, mouth opening)

    async def watch() -> None:
        async for frame in stream:
            openings.append((frame.presentation_time, mouth_opening(frame.array)))

    watcher = asyncio.create_task(watch())
    try:
        await wait_for(lambda: len(openings) >= 5, 10)  # some idle face first
        closed_before = max(o for _, o in openings)
        started = len(events.of("speaking_started"))
        turn = await session.say("Hello there. This is a test.")
        assert turn
        await wait_for(lambda: len(events.of("speaking_started")) > started, 10)
        assert session.speaking
        await session.wait_idle(20)
        assert not session.speaking
        assert len(events.of("speaking_ended")) == len(events.of("speaking_started"))
    finally:
        stream.close()
        await watcher
    # Presentation times (the detector's and the frames'), not when they reached the test.
    start_t = events.of("speaking_started")[-1].data.time
    end_t = events.of("speaking_ended")[-1].data.time
    assert end_t - start_t > 0.5
    during = [o for t, o in openings if start_t <= t <= end_t]
    assert closed_before < 0.1 and max(during) > 0.5  # the mouth opened while speaking
    assert session.stats().utterances >= 1


@pytest.mark.slow
async def test_audio_cut_off_mid_speech_ends_speaking_and_wait_idle(emu: Emulator) -> None:
    """The sender's audio stops mid-word for good: the detector heard speech and nothing came
    to end it; ``speaking`` stayed true and ``wait_idle`` waited out its timeout (the CLI's qa:
    120 s a turn)."""
    async with _audio_withheld(emu, FaultWindow(1.0, 600.0)) as (session, _):
        await session.say("Hello there. This sentence is cut off in the middle of a word.")
        await wait_for(lambda: session.speaking, 10)
        await session.wait_idle(60)  # (old: TimeoutError)
        assert not session.speaking
        assert session.stats().speaking is False


@pytest.mark.slow
async def test_a_short_audio_gap_mid_speech_does_not_end_it(emu: Emulator) -> None:
    """1.25 s without audio inside one turn (less than the 2 s media timeout, with room for a
    loaded machine's delays): still speaking, and ``wait_idle`` waits for the end of the turn,
    not the gap."""
    async with _audio_withheld(emu, FaultWindow(1.0, 1.25)) as (session, media):
        turn = await session.say(
            "The quick brown fox jumps over the lazy dog. Artificial avatars must keep their "
            "lips in sync with the voice."
        )
        await wait_for(lambda: session.speaking, 10)
        await session.wait_idle(60)
        assert media.events(turn, "turn_end"), "wait_idle returned before the turn ended"


@contextlib.asynccontextmanager
async def _audio_withheld(
    emu: Emulator, window: FaultWindow
) -> AsyncIterator[tuple[AvatarSession, AvatarMedia]]:
    """A session of its own whose next turn has no audio sent within ``window``."""
    options = emulator_options(emu)
    async with AvatarSession(options) as session:
        await session.wait_first_frame(20)
        assert session.session_id is not None
        media = emu.avatar_media(session.session_id)
        media.inject_faults(MediaFaults(audio_withheld=window))
        yield session, media


def tone_wav(seconds: float, rate: int = 16000, hz: float = 300.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


async def test_say_audio_speech_duration(shared: tuple[AvatarSession, Events]) -> None:
    session, events = shared
    await session.wait_idle(20)
    started = len(events.of("speaking_started"))
    assert await session.say_audio(tone_wav(1.2))
    await wait_for(lambda: len(events.of("speaking_ended")) > started, 10)
    start = events.of("speaking_started")[-1].data
    end = events.of("speaking_ended")[-1].data
    assert abs((end.time - start.time) - 1.2) < 0.15  # media time of the audible part


async def test_interrupt_ends_speech(shared: tuple[AvatarSession, Events]) -> None:
    session, events = shared
    ended = len(events.of("speaking_ended"))
    text = "This is a long sentence that keeps going and going for many seconds " * 3
    await session.say(text)
    await wait_for(lambda: session.speaking, 10)
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await session.interrupt()
    await wait_for(lambda: len(events.of("speaking_ended")) > ended, 10)
    # The text's natural end is > 10 s away: half of that leaves room for a busy machine.
    assert time.monotonic() - t0 < 5.0
    assert not session.speaking


@pytest.mark.slow
async def test_wait_idle_raises_when_the_media_is_lost_mid_speech() -> None:
    """The service goes away while the avatar speaks: ``wait_idle`` raises the loss (it
    returned 2 s later as if the turn had ended: the audio had stopped, with everything)."""
    async with Emulator() as gone:
        options = emulator_options(gone, reconnect=ReconnectPolicy.disabled())
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(AvatarSession(options))
            await session.wait_first_frame(20)
            await session.say("This sentence is long enough to be cut off by the outage. " * 3)
            await wait_for(lambda: session.speaking, 10)
            await gone.stop()
            with pytest.raises(MediaLostError):
                await session.wait_idle(30)
            assert session.error_raised  # seen by the caller: leaving the block does not raise


async def test_wait_idle_waits_while_no_media_comes_at_all(emu: Emulator) -> None:
    """No video RTP or sender report for the media timeout either: a loss the watchdog is
    declaring, not the end of a turn (the audio's silence alone made it idle)."""
    session = AvatarSession(emulator_options(emu))
    session._state = SessionState.CONNECTED  # (no connection needed: idleness is judged here)
    session._last_audio = time.monotonic() - 10.0
    session.video_pipeline._last_activity = time.monotonic()
    await session.wait_idle(5)  # video flows: the avatar is merely silent
    session.video_pipeline._last_activity = time.monotonic() - 10.0
    with pytest.raises(TimeoutError):
        await session.wait_idle(0.3)
    await session.close()


async def test_wait_idle_before_start_is_a_state_error(emu: Emulator) -> None:
    session = AvatarSession(emulator_options(emu))
    with pytest.raises(SessionStateError, match="not started"):
        await session.wait_idle(1)
    await session.close()


async def test_close_on_another_event_loop_ends_the_session(emu: Emulator) -> None:
    """A thread of the caller's own runs ``close()`` on its own loop: the session still
    closes on its loop and is ended on the service (it was marked ended here only, the
    service session left open, its HTTP client bound to the other loop)."""
    ended = emu.counters.sessions_ended
    session = new_session(emu)
    await session.start()
    await asyncio.to_thread(asyncio.run, session.close())
    assert session.state is SessionState.ENDED
    assert emu.counters.sessions_ended == ended + 1
    assert session.stats().errors == ()


async def test_streams_and_calls_from_another_thread_are_state_errors(emu: Emulator) -> None:
    """From another thread a started session's video() said "no running event loop" (a bare
    RuntimeError) and say() failed inside aiohttp: both say what to do instead."""
    session = new_session(emu)
    await session.start()
    try:
        with pytest.raises(SessionStateError, match="session's event loop"):
            await asyncio.to_thread(session.video)
        with pytest.raises(SessionStateError, match="session's event loop"):
            await asyncio.to_thread(asyncio.run, session.say("hello"))
        async with session.video() as stream:  # on its own loop: as before
            await asyncio.wait_for(stream.recv(), 20)
    finally:
        await session.close()


# --- exit paths ---------------------------------------------------------------------------


@pytest.fixture
def deletes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """WHEP DELETEs seen by the emulator: one entry per viewer disconnected while the media
    was still live (``end`` closing the media disconnects viewers too, with closed=True)."""
    seen: list[bool] = []
    original = AvatarMedia.disconnect_viewer

    async def spy(self: AvatarMedia, resource_id: str) -> bool:
        if not self.closed:
            seen.append(True)
        return await original(self, resource_id)

    monkeypatch.setattr(AvatarMedia, "disconnect_viewer", spy)
    return seen


def new_session(emu: Emulator, events: Events | None = None) -> AvatarSession:
    session = AvatarSession(emulator_options(emu, detect_speech=False))
    if events is not None:
        for name in ("state", "ended", "disconnected"):
            session.on(name, events)
    return session


async def test_normal_exit_deletes_and_ends(emu: Emulator, deletes: list[bool]) -> None:
    ended = emu.counters.sessions_ended
    events = Events()
    async with new_session(emu, events) as session:
        await session.wait_first_frame(10)
        recorder_video = session.video()
    assert deletes == [True]
    assert emu.counters.sessions_ended == ended + 1
    assert session.state is SessionState.ENDED and recorder_video.closed
    assert events.names()[-2:] == ["state", "ended"] and "disconnected" not in events.names()
    await session.close()  # idempotent
    assert emu.counters.sessions_ended == ended + 1


async def test_playout_delay_plays_the_stream_out_in_order(emu: Emulator) -> None:
    """With ``max_playout_delay`` the frames go through the playout stage: all of them, in
    order, and the first-frame wait still works (it decodes from the same stage)."""
    options = emulator_options(emu, detect_speech=False, max_playout_delay=0.3)
    async with AvatarSession(options) as session:
        stream = session.video(policy="all")
        await session.wait_first_frame(10)
        stamps = []
        async for frame in stream:
            stamps.append(frame.rtp_timestamp)
            if len(stamps) == 25:
                break
        delay = session.stats().playout_delay_s  # the delay in force, within the bound
        assert delay is not None and 0.0 <= delay <= 0.3
        decoder = session.stats().video_decoder  # the one the streams read, after playout
        assert decoder is not None and decoder.decoded >= 25
    assert stamps == sorted(stamps) and len(set(stamps)) == 25
    assert session.stats().video.frames >= 25


async def test_exception_exit_deletes_and_ends(emu: Emulator, deletes: list[bool]) -> None:
    ended = emu.counters.sessions_ended
    with pytest.raises(RuntimeError, match="boom"):
        async with new_session(emu) as session:
            await session.wait_first_frame(10)
            raise RuntimeError("boom")
    assert deletes == [True] and emu.counters.sessions_ended == ended + 1
    assert session.state is SessionState.ENDED


async def test_cancellation_exit_deletes_and_ends(emu: Emulator, deletes: list[bool]) -> None:
    ended = emu.counters.sessions_ended
    ready = asyncio.Event()
    session = new_session(emu)

    async def user() -> None:
        async with session:
            await session.wait_first_frame(10)
            ready.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(user())
    await asyncio.wait_for(ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deletes == [True] and emu.counters.sessions_ended == ended + 1
    assert session.state is SessionState.ENDED


async def test_cancellation_while_connecting_ends_the_session(emu: Emulator) -> None:
    created, ended = emu.counters.sessions_created, emu.counters.sessions_ended
    session = new_session(emu)
    task = asyncio.create_task(session.start())
    await wait_for(lambda: emu.counters.sessions_created > created, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emu.counters.sessions_ended == ended + 1
    assert session.state is SessionState.FAILED


async def test_close_from_another_task_aborts_start(emu: Emulator) -> None:
    created, ended = emu.counters.sessions_created, emu.counters.sessions_ended
    session = new_session(emu)
    task = asyncio.create_task(session.start())
    await wait_for(lambda: emu.counters.sessions_created > created, 5)
    await session.close()
    with pytest.raises(SessionClosedError):
        await task
    assert emu.counters.sessions_ended == ended + 1
    assert session.state in (SessionState.ENDED, SessionState.FAILED)
    with pytest.raises(SessionClosedError):
        await session.wait_first_frame(1)
    with pytest.raises(SessionClosedError):
        await session.say("too late")


async def test_session_ended_elsewhere_is_reported(emu: Emulator) -> None:
    events = Events()
    options = emulator_options(emu, detect_speech=False)
    session = AvatarSession(dataclasses.replace(options, keep_alive_interval=0.2))
    for name in ("disconnected", "error", "ended"):
        session.on(name, events)
    with pytest.raises(AvatarRTCError) as raised:  # leaving the block: the loss is raised
        async with session:
            await session.wait_first_frame(10)
            live = session.live
            assert live is not None
            await live.client.end(live.handle)  # e.g. another process ended it
            await wait_for(lambda: "error" in events.names(), 5)
            assert session.state is SessionState.DISCONNECTED
            assert events.names()[0] == "disconnected"
            assert any("gone" in e for e in session.stats().errors)
    assert raised.value is session.error
    # Compared by value: mypy still believes the state narrowed to DISCONNECTED above.
    assert events.names()[-1] == "ended" and session.state.value == "ended"


async def test_failed_start_cleans_up(emu: Emulator) -> None:
    ended = emu.counters.sessions_ended
    emu.faults.fail_next("init-client", 500)
    session = new_session(emu)
    with pytest.raises(ServerError):
        await session.start()
    assert session.state is SessionState.FAILED
    assert emu.counters.sessions_ended == ended + 1
    assert session.stats().errors


# --- bare WHEP --------------------------------------------------------------------------


async def test_bare_whep_mode(emu: Emulator, deletes: list[bool]) -> None:
    async with ControlClient(emu.api_url, emu.ks) as client, client.open_session("emu") as live:
        session = AvatarSession(
            SessionOptions(whep_url=live.client_config.whep_url, ice=LOOPBACK_ICE)
        )
        async with session:
            frame = await session.wait_first_frame(10)
            assert frame.to_ndarray().shape == (512, 512, 3)
            assert session.session_id is None and session.timings.session is None
            assert session.whep_url == live.client_config.whep_url
            with pytest.raises(ConfigurationError):
                await session.say("hello")
            ended = emu.counters.sessions_ended
        assert deletes == [True]
        assert emu.counters.sessions_ended == ended  # the service session is not ours to end
        assert session.state is SessionState.ENDED


async def test_bare_whep_excludes_control_options() -> None:
    with pytest.raises(ConfigurationError, match="excludes api_url and ks"):
        SessionOptions(whep_url="http://127.0.0.1:1/whep", ks=Secret("ks-x"))
    bare = SessionOptions(whep_url="http://127.0.0.1:1/whep")
    async with ControlClient("http://127.0.0.1:1", "ks-x") as client:
        with pytest.raises(ConfigurationError, match="excludes client"):
            AvatarSession(bare, client=client)


# --- recording, logging ---------------------------------------------------------------------


async def test_record_copy_and_encode_stop_on_close(
    emu: Emulator, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="avatar_rtc")
    session = new_session(emu)
    async with session:
        copy = session.record(tmp_path / "copy.mp4")
        encode = session.record(
            tmp_path / "encode.mkv", RecordOptions(mode="encode", fragment_seconds=0.5)
        )
        await session.wait_first_frame(10)
        await wait_for(
            lambda: encode.stats().video.frames >= 10 and copy.stats().video.frames >= 10
        )
        token = session.live.handle.token.reveal() if session.live else ""
        stats = session.stats()
    assert len(stats.recorders) == 2
    for recorder in (copy, encode):
        final = recorder.stats()
        assert final.closed and final.error is None and final.video.frames >= 10
        assert final.audio.frames > 0 and recorder.path.stat().st_size > 10_000
    # Secrets never reach the logs (KS of the emulator, session JWT).
    assert token and token not in caplog.text and emu.ks not in caplog.text
    assert "first video frame" in caplog.text


async def test_stopping_an_encode_recorder_stops_its_decoders(emu: Emulator, tmp_path: Any) -> None:
    async with new_session(emu) as session:
        await session.wait_first_frame(10)
        video, audio = decoder_for(session.video_pipeline), decoder_for(session.audio_pipeline)
        recorder = session.record(tmp_path / "encode.mkv", RecordOptions(mode="encode"))
        await wait_for(lambda: recorder.stats().video.frames >= 5)
        assert video.running and audio.running
        stats = await recorder.astop()
        # Not when the session closes: nothing else uses them.
        assert not video.running and not audio.running
        assert stats.error is None and stats.video.frames >= 5
        decoded = video.stats().decoded
        await asyncio.sleep(0.3)
        assert video.stats().decoded == decoded and recorder.stats().late_writes == 0


# --- calls out of turn ------------------------------------------------------------------------


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


async def test_streams_and_recorders_opened_before_start_close_with_the_session(
    emu: Emulator, tmp_path: Any
) -> None:
    session = new_session(emu)
    stream = session.video()
    recorder = session.record(tmp_path / "never.mkv")
    assert _threads("recorder:never.mkv")
    await session.close()  # never started
    assert session.state is SessionState.ENDED
    assert stream.closed and recorder.stats().closed
    assert not decoder_for(session.video_pipeline).running
    await wait_for(lambda: not _threads("recorder:never.mkv"))  # (it ends right after closing)


async def test_calls_on_a_closed_session_raise_session_closed(emu: Emulator, tmp_path: Any) -> None:
    async with new_session(emu) as session:
        await session.wait_first_frame(10)
    calls: dict[str, Callable[[], object]] = {
        "video()": session.video,
        "audio()": session.audio,
        "record()": lambda: session.record(tmp_path / "late.mkv"),
    }
    for what, call in calls.items():
        with pytest.raises(SessionClosedError, match=re.escape(what)):
            call()
    with pytest.raises(SessionClosedError):
        await session.say("too late")
    with pytest.raises(SessionClosedError):
        await session.start()
    assert not _threads("recorder:late.mkv") and not (tmp_path / "late.mkv").exists()
    assert session.stats().state is SessionState.ENDED  # stats still answer


async def test_usage_errors_are_typed(emu: Emulator) -> None:
    session = new_session(emu)
    with pytest.raises(ConfigurationError, match="frist_frame"):
        session.on("frist_frame", lambda event: None)
    with pytest.raises(ConfigurationError, match="policy"):
        session.video(policy="newest")  # type: ignore[arg-type]
    for capacity in (0, 2.5, "3", True):
        with pytest.raises(ConfigurationError, match="capacity"):
            session.audio(capacity=capacity)  # type: ignore[arg-type]
    with pytest.raises(SessionStateError, match="not started") as info:
        await session.say("hello")
    assert isinstance(info.value, RuntimeError)  # what it was before it had a type
    with pytest.raises(SessionStateError, match="not started"):
        await session.wait_first_frame(1)
    await session.close()


# --- speech detector (unit) -----------------------------------------------------------------


def chunk(db: float, n: int = 960) -> np.ndarray[Any, Any]:
    """n samples of a square wave at ``db`` dBFS (RMS), int16."""
    amp = 32768 * 10 ** (db / 20)
    return np.where(np.arange(n) % 2 == 0, amp, -amp).astype(np.int16)


async def test_speech_detector_hysteresis_and_hang() -> None:
    det = SpeechDetector(start_db=-40, stop_db=-50, min_speech=0.04, hang=0.4)
    t = 0.0

    def feed(db: float) -> str | None:
        nonlocal t
        event = det.feed(chunk(db), t, 0.02)
        t += 0.02
        return event.kind if event else None

    assert feed(-120) is None and feed(-30) is None  # one loud 20 ms chunk: not yet speech
    assert feed(-30) == "started" and det.speaking
    assert det.utterances == 1
    assert [feed(-45) for _ in range(30)] == [None] * 30  # between the thresholds: still on
    assert [feed(-120) for _ in range(19)] == [None] * 19  # a pause shorter than the hang
    assert feed(-30) is None and det.speaking
    events = [feed(-120) for _ in range(20)]
    assert events.count("ended") == 1 and not det.speaking
    assert abs(rms_dbfs(chunk(-30)) + 30) < 0.1 and rms_dbfs(np.zeros(10, np.int16)) == -120
