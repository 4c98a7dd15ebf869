"""MediaWatchdog: a loss is silence after media flowed, or a connection that says it died."""

from __future__ import annotations

import asyncio
import time

import pytest

from avatar_rtc.rtc.watchdog import MediaWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Media:
    """The time of the last activity, which the test moves by hand (on ``clock``)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.last: float | None = None

    def arrives(self) -> None:
        self.last = self.clock.now if self.clock is not None else time.monotonic()

    def __call__(self) -> float | None:
        return self.last


def test_silence_counts_only_after_media_flowed() -> None:
    clock = Clock()
    media = Media(clock)
    watchdog = MediaWatchdog(media, timeout=2.0, clock=clock)
    clock.now += 60.0  # a sender slow to start is not a loss
    assert watchdog.loss() is None and watchdog.last_media is None
    media.arrives()
    assert watchdog.loss() is None and watchdog.last_media == clock.now
    clock.now += 1.9
    assert watchdog.loss() is None
    clock.now += 0.2
    assert watchdog.loss() == "no media for 2.1 s"
    assert watchdog.silence() == pytest.approx(2.1)


def test_any_activity_resets_the_silence() -> None:
    clock = Clock()
    media = Media(clock)
    watchdog = MediaWatchdog(media, timeout=2.0, clock=clock)
    for _ in range(10):  # 15 s in all, never 2 s quiet (e.g. sender reports while RTP pauses)
        clock.now += 1.5
        media.arrives()
        assert watchdog.loss() is None
    clock.now += 1.5
    assert watchdog.loss() is None
    clock.now += 1.5  # 3 s since the last activity
    assert watchdog.loss() == "no media for 3.0 s"


def test_a_dead_connection_is_a_loss_at_once_until_rearmed() -> None:
    clock = Clock()
    media = Media(clock)
    watchdog = MediaWatchdog(media, timeout=None, clock=clock)  # no-media detection off
    clock.now += 1.0
    media.arrives()
    clock.now += 3600.0
    assert watchdog.loss() is None  # silence alone never counts without a timeout
    watchdog.mark_dead("media connection closed")
    watchdog.mark_dead("media connection failed")  # the first reason stays
    assert watchdog.loss() == watchdog.dead == "media connection closed"
    watchdog.rearm()
    assert watchdog.loss() is None and watchdog.dead is None


def test_rearm_waits_for_media_on_the_new_connection() -> None:
    clock = Clock()
    media = Media(clock)
    watchdog = MediaWatchdog(media, timeout=1.0, clock=clock)
    clock.now += 1.0
    media.arrives()
    clock.now += 0.5
    watchdog.rearm()
    clock.now += 5.0
    assert watchdog.loss() is None  # no media yet on the new connection: not a loss
    media.arrives()
    clock.now += 1.0
    assert watchdog.loss() == "no media for 1.0 s"


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MediaWatchdog(Media(), timeout=0)


async def _flowing(media_timeout: float) -> tuple[Media, MediaWatchdog]:
    """A watchdog on the real clock, and media that arrived after it was armed."""
    media = Media()
    watchdog = MediaWatchdog(media, timeout=media_timeout)
    await asyncio.sleep(0.01)
    media.arrives()
    return media, watchdog


async def test_lost_and_media_within_on_the_real_clock() -> None:
    media, watchdog = await _flowing(media_timeout=0.2)
    reason = await asyncio.wait_for(watchdog.lost(), 5)
    assert reason.startswith("no media for")
    assert watchdog.silence() >= 0.2  # not before the timeout
    assert await watchdog.media_within(0.1) is False

    async def later() -> None:
        await asyncio.sleep(0.05)
        media.arrives()

    task = asyncio.ensure_future(later())
    assert await watchdog.media_within(5.0) is True
    await task
    mark = watchdog.mark()
    assert not watchdog.media_since(mark)
    await asyncio.sleep(0.01)
    media.arrives()
    assert watchdog.media_since(mark)


async def test_lost_sleeps_until_the_loss_can_be_due_and_mark_dead_wakes_it() -> None:
    _, watchdog = await _flowing(media_timeout=30.0)
    waiter = asyncio.ensure_future(watchdog.lost())
    await asyncio.sleep(0.2)
    assert not waiter.done()  # 30 s of silence to go: asleep
    watchdog.mark_dead("media connection closed")
    assert await asyncio.wait_for(waiter, 5) == "media connection closed"


async def test_media_that_keeps_flowing_is_never_a_loss() -> None:
    media, watchdog = await _flowing(media_timeout=1.0)  # (a busy machine's stalls are shorter)
    waiter = asyncio.ensure_future(watchdog.lost())
    for _ in range(50):  # 2.5 s of media every 50 ms: each wake-up finds the deadline moved
        await asyncio.sleep(0.05)
        media.arrives()
        assert not waiter.done()
    reason = await asyncio.wait_for(waiter, 10)  # then silence
    assert reason.startswith("no media for")
    assert watchdog.silence() >= 1.0
