"""The video pipeline's timer sleeps while nothing waits on time, and the packet path wakes it.

A pipeline on an aiortc receiver that is never started (``detached_pipeline``), H264 from
libx264, with ``IDLE_TICK`` raised to a minute: whatever the timer does within these tests,
it did because something woke it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import receiver as receiver_module
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.rtc.detached_pipeline import Packet, detached_pipeline, feed_rtp, h264_codec
from tests.rtc.test_keyframes import h264_stream, x264
from tests.support import wait_until


class Fixture:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.plis: list[float] = []
        self.nacks: list[list[int]] = []
        self.ticks = 0
        self.frames: list[EncodedFrame] = []

        async def send_pli(receiver: Any, media_ssrc: int) -> None:
            self.plis.append(time.monotonic())

        async def send_nack(receiver: Any, media_ssrc: int, lost: list[int]) -> None:
            self.nacks.append(lost)

        monkeypatch.setattr(seam, "send_pli", send_pli)
        monkeypatch.setattr(seam, "send_nack", send_nack)
        monkeypatch.setattr(receiver_module, "IDLE_TICK", 60.0)
        self.receiver, self.pipeline = detached_pipeline(h264_codec(nack=True))
        self.pipeline._start_timer()
        self.pipeline.subscribe(self.frames.append)
        tick = self.pipeline._tick

        async def counted(now: float) -> None:
            self.ticks += 1
            await tick(now)

        self.pipeline._tick = counted  # type: ignore[method-assign]

    async def feed(self, packets: list[Packet]) -> None:
        await feed_rtp(self.receiver, packets)


@pytest.fixture
async def fx(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fixture]:
    fixture = Fixture(monkeypatch)
    yield fixture
    fixture.pipeline.close()


def frames_of(packets: list[Packet]) -> list[list[Packet]]:
    by_ts: dict[int, list[Packet]] = {}
    for p in packets:
        by_ts.setdefault(p[1], []).append(p)
    return list(by_ts.values())


async def test_timer_sleeps_while_frames_flow_in_order(fx: Fixture) -> None:
    frames = frames_of(h264_stream(x264(12), "as-encoded", "aiortc"))
    for frame in frames:  # paced: the timer gets the loop between frames
        await fx.feed(frame)
        await asyncio.sleep(0.04)
    assert len(fx.frames) == 12
    assert fx.ticks == 0  # (the old timer ticked every 50 ms: ~10 times here)
    assert fx.nacks == []


async def test_a_hole_wakes_the_timer_for_retries_and_the_give_up(fx: Fixture) -> None:
    frames = frames_of(h264_stream(x264(12), "as-encoded", "aiortc"))
    for frame in frames[:6]:
        await fx.feed(frame)
    await asyncio.sleep(0.1)  # idle again
    plis_before, ticks_before = len(fx.plis), fx.ticks
    lost = frames[6][0][0]
    await fx.feed(frames[6][1:] + frames[7])  # the first packet of frame 6 never comes
    # NACKed at once, then retried by the timer; the hole given up after the wait: a PLI.
    await wait_until(lambda: len(fx.plis) > plis_before, within=10.0)
    assert [lost] in fx.nacks
    assert sum(lost in n for n in fx.nacks) >= 2  # the first NACK and the timer's retry
    assert fx.ticks > ticks_before
    assert len(fx.frames) == 6  # nothing after the hole without a keyframe


async def test_a_pli_held_back_wakes_the_timer_when_its_interval_has_passed(fx: Fixture) -> None:
    frames = frames_of(h264_stream(x264(6), "as-encoded", "aiortc"))
    for frame in frames:
        await fx.feed(frame)
    await asyncio.sleep(0.4)  # past the PLI interval of the stream start's request
    sent = len(fx.plis)
    fx.pipeline.request_keyframe()  # goes at once (its task)
    await wait_until(lambda: len(fx.plis) == sent + 1, within=10.0)
    fx.pipeline.request_keyframe()  # within the interval: held back, the timer sends it
    await wait_until(lambda: len(fx.plis) == sent + 2, within=10.0)
    assert fx.plis[-1] - fx.plis[-2] >= 0.3 * 0.9  # (the interval, a coarse clock aside)
