"""SessionOptions.read_interval: a session whose sockets are read at a pacer's ticks.

Against the in-process emulator on 127.0.0.1: every frame comes, whole and in order, with
the decoder on the loop (as the fleet's workers run) and on its own thread; the pacer let go
of the sockets once the session closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from avatar_rtc.emulator import Emulator
from avatar_rtc.media.formats import AudioFormat, VideoFormat
from avatar_rtc.rtc import datagram_batch
from avatar_rtc.rtc.read_pacer import pacer_for
from avatar_rtc.session import AvatarSession
from tests.support import emulator_options

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

INTERVAL = 0.1
FRAMES = 50  # two seconds of the emulator's 25 fps


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


@pytest.mark.parametrize("on_loop", [True, False], ids=["decoder-on-loop", "decoder-thread"])
async def test_every_frame_comes_whole_and_in_order(emu: Emulator, on_loop: bool) -> None:
    options = emulator_options(
        emu, detect_speech=False, decode_video_on_loop=on_loop, read_interval=INTERVAL
    )
    async with AvatarSession(options) as session:
        # "all": the frames of a tick come at once, and none may be dropped for the next
        video = session.video(VideoFormat(pixel_format="rgb24"), policy="all")
        audio = session.audio(AudioFormat(), policy="all")
        indexes: list[int] = []
        async for frame in video:
            assert frame.to_ndarray().shape == (frame.height, frame.width, 3)
            indexes.append(frame.index)
            if len(indexes) == FRAMES:
                break
        stats = session.stats()
        audio_stats = audio.stats()
        receiver = session.video_pipeline.receiver
        assert receiver is not None
        batch = datagram_batch._BATCHES[receiver.transport]
    assert indexes == list(range(indexes[0], indexes[0] + FRAMES))  # none lost or reordered
    assert stats.video.frames_dropped == 0 and stats.video.lost == 0
    assert stats.video_decoder.decode_errors == 0
    assert audio_stats.received > 0 and audio_stats.dropped == 0
    # The media came at the pacer's ticks: the loop woke for a datagram only when a tick had
    # found the socket empty (the first datagram, and after any pause in the sender's stream).
    assert batch.paced_reads > batch.wakeups
    assert pacer_for(INTERVAL).held == 0  # closed: nothing left held


async def test_the_loop_is_idle_between_ticks_with_no_session() -> None:
    """(the pacer's timer runs only while something is held)"""
    pacer = pacer_for(INTERVAL)
    ticks = pacer.ticks
    await asyncio.sleep(3 * INTERVAL)
    assert pacer.held == 0 and pacer.ticks == ticks
