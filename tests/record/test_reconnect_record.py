"""A recording across a reconnect: the same file keeps growing, playable, the gap visible.

The emulator drops our viewer mid-recording; the session reconnects on a new peer connection
(new SSRC, a new keyframe). The file must then decode end to end without an error, hold
media from before and after, and show the gap in its video timestamps (never collapsed,
never backwards). The 10 s network outage and the TURN restart variants, in a private network
namespace, are in tests/rtc/test_reconnect_outage.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia
from avatar_rtc.record.options import RecordMode, RecordOptions
from avatar_rtc.rtc.reconnect import Outage
from avatar_rtc.session import AvatarSession, SessionEvent
from tests.record.filecheck import decodes_cleanly
from tests.rtc.outage_scenario import packet_times, visible_gap
from tests.support import emulator_options, require_tool, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


@pytest.mark.parametrize("mode", ["copy", "encode"])
@pytest.mark.slow
async def test_recording_keeps_growing_across_a_reconnect(
    emu: Emulator, tmp_path: Path, mode: RecordMode
) -> None:
    require_tool("ffmpeg")
    out = tmp_path / f"reconnect-{mode}.mp4"
    options = emulator_options(emu, detect_speech=False)
    outages: list[Outage] = []

    def on_reconnected(event: SessionEvent) -> None:
        assert isinstance(event.data, Outage)
        outages.append(event.data)

    async with AvatarSession(options) as session:
        session.on("reconnected", on_reconnected)
        recorder = session.record(out, RecordOptions(mode=mode))
        await wait_until(lambda: recorder.stats().video.frames >= 25, 15)
        assert session.session_id is not None
        media = emu.session(session.session_id).media
        assert isinstance(media, AvatarMedia)
        before = recorder.stats().video.frames
        (resource_id,) = media.viewers
        t_drop = time.monotonic()
        await media.disconnect_viewer(resource_id)
        await wait_until(lambda: outages, 15)
        await wait_until(lambda: recorder.stats().video.frames >= before + 25, 15)
        stats = await recorder.astop()
    assert stats.error is None and stats.path == str(out)
    assert stats.parts == ()  # the same encoder parameters: one file
    (outage,) = outages
    assert outage.replaced and outage.seconds is not None
    assert outage.started <= t_drop + 0.1  # the outage starts at the last media before it

    # One file, decodable end to end, with media from both connections.
    assert decodes_cleanly(out) == ""
    video, audio = packet_times(out, "v"), packet_times(out, "a")
    assert len(video) >= stats.video.frames >= before + 25
    assert audio and audio[-1] > video[0] + 1.0
    # The gap is in the video timestamps: never collapsed, never backwards, about the outage.
    gaps = [b - a for a, b in itertools.pairwise(video)]
    assert min(gaps) > 0
    assert max(gaps) >= visible_gap(outage.seconds), (max(gaps), outage)
    assert video[-1] - video[0] >= outage.seconds + 1.0
