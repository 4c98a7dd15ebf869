"""Stream policies against the emulator's stream: `latest` for models, `all` for recording,
and copy-mode recording that never decodes video."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avatar_rtc import AvatarSession, VideoFormat
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia
from avatar_rtc.media.decoder import decoder_for
from tests.media.frame_gaps import assert_no_unexplained_gaps
from tests.media.loopback import rss_bytes
from tests.support import emulator_options, wait_until

FRAME_BYTES = 512 * 512 * 3  # one decoded RGB frame of the emulator's picture


@pytest.fixture
async def avatar() -> AsyncIterator[tuple[AvatarSession, AvatarMedia]]:
    async with Emulator() as emulator:
        session = AvatarSession(emulator_options(emulator))
        async with session:
            await session.wait_first_frame(timeout=20)
            assert session.session_id is not None
            media = emulator.session(session.session_id).media
            assert isinstance(media, AvatarMedia)
            yield session, media


@pytest.mark.slow
async def test_latest_after_a_5s_sleep_gives_the_newest_frame(
    avatar: tuple[AvatarSession, AvatarMedia],
) -> None:
    session, _ = avatar
    stream = session.video(policy="latest")
    await asyncio.wait_for(stream.__anext__(), 10)
    # Every decoded frame, seen after the stream's own sink (added first) got it.
    decoded: list[int] = []
    remove = decoder_for(session.video_pipeline).add_sink(lambda d: decoded.append(d.encoded.index))
    gc.collect()
    before = rss_bytes()
    await asyncio.sleep(5.0)  # the consumer is busy; ~125 frames arrive meanwhile
    grown = rss_bytes() - before
    newest = decoded[-1]
    frame = await asyncio.wait_for(stream.__anext__(), 10)
    remove()
    # The older of the two newest decoded frames: how far the sender is ahead depends on how
    # busy the machine is, not on the policy.
    assert frame.index >= newest - 1, (frame.index, newest)
    assert stream.stats().dropped >= 100
    assert grown < 4 * FRAME_BYTES, f"RSS grew {grown / 2**20:.1f} MB while the consumer slept"


@pytest.mark.slow
async def test_all_loses_no_frame_over_10s_with_a_consumer_that_keeps_up(
    avatar: tuple[AvatarSession, AvatarMedia],
) -> None:
    session, _ = avatar
    stream = session.video(VideoFormat(size=(128, 128)), policy="all")
    indices: list[int] = []

    async def consume() -> None:
        async for frame in stream:
            frame.to_ndarray()
            indices.append(frame.index)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(10.0)
    read = stream.stats()  # (close() drops what is queued then)
    stream.close()
    await task
    assert len(indices) >= 200, len(indices)  # 25 fps
    assert_no_unexplained_gaps(indices, decoder_for(session.video_pipeline).stats())
    assert read.dropped == 0
    assert session.video_pipeline.stats().frames_dropped == 0


async def test_copy_recording_does_not_decode_video(
    avatar: tuple[AvatarSession, AvatarMedia], tmp_path: Path
) -> None:
    session, _ = avatar
    decoder = decoder_for(session.video_pipeline)
    assert not decoder.running  # the first-frame hook has let go of the decoder
    decoded = decoder.stats().decoded
    recorder = session.record(tmp_path / "copy.mkv")
    await wait_until(lambda: recorder.stats().video.frames >= 40, within=30.0)  # hang guard
    assert not decoder.running
    # The stopped decoder thread may still finish the one frame it had in hand; decoding for
    # the recording would add ~50.
    assert decoder.stats().decoded <= decoded + 1


async def test_video_decoded_on_the_loop_when_asked() -> None:
    """``decode_video_on_loop``: the same frames, no decoder thread (the fleet's workers)."""
    import threading

    async with Emulator() as emulator:
        options = emulator_options(emulator, detect_speech=False, decode_video_on_loop=True)
        async with AvatarSession(options) as session:
            first = await session.wait_first_frame(timeout=20)
            assert first.width == 512
            stream = session.video(VideoFormat(size=(64, 64)), policy="all")
            loop_thread = threading.current_thread()
            sink_threads: set[threading.Thread] = set()
            remove = decoder_for(session.video_pipeline).add_sink(
                lambda d: sink_threads.add(threading.current_thread())
            )
            frames = []
            async with asyncio.timeout(20):  # hang guard
                async for frame in stream:
                    frames.append(frame.to_ndarray())
                    if len(frames) == 25:
                        break
            remove()
            names = {t.name for t in threading.enumerate()}
            assert "avatar-rtc-video-decoder" not in names
            assert sink_threads == {loop_thread}
            assert all(f.shape == (64, 64, 3) for f in frames)
            assert decoder_for(session.video_pipeline).stats().decode_errors == 0
