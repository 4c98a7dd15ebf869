"""MediaWatchdog: a loss is silence after media flowed, or a connection that says it died."""

from __future__ import annotations

import asyncio

import pytest

from avatar_rtc.rtc.watchdog import MediaWatchdog


class Counter:
    """An activity counter the test moves by hand."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        return self.value


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_silence_counts_only_after_media_flowed() -> None:
    counter, clock = Counter(), Clock()
    watchdog = MediaWatchdog(counter, timeout=2.0, clock=clock)
    clock.now += 60.0  # a sender slow to start is not a loss
    assert watchdog.loss() is None and watchdog.last_media is None
    counter.value += 1
    assert watchdog.loss() is None and watchdog.last_media == clock.now
    clock.now += 1.9
    assert watchdog.loss() is None
    clock.now += 0.2
    assert watchdog.loss() == "no media for 2.1 s"
    assert watchdog.silence() == pytest.approx(2.1)


def test_any_activity_resets_the_silence() -> None:
    counter, clock = Counter(), Clock()
    watchdog = MediaWatchdog(counter, timeout=2.0, clock=clock)
    for _ in range(10):  # 15 s in all, never 2 s quiet (e.g. sender reports while RTP pauses)
        counter.value += 1
        clock.now += 1.5
        assert watchdog.loss() is None
    clock.now += 1.5
    assert watchdog.loss() is None
    clock.now += 1.5  # 3 s since the last activity
    assert watchdog.loss() == "no media for 3.0 s"


def test_a_dead_connection_is_a_loss_at_once_until_rearmed() -> None:
    counter, clock = Counter(), Clock()
    watchdog = MediaWatchdog(counter, timeout=None, clock=clock)  # no-media detection off
    counter.value += 1
    clock.now += 3600.0
    assert watchdog.loss() is None  # silence alone never counts without a timeout
    watchdog.mark_dead("media connection closed")
    watchdog.mark_dead("media connection failed")  # the first reason stays
    assert watchdog.loss() == watchdog.dead == "media connection closed"
    watchdog.rearm()
    assert watchdog.loss() is None and watchdog.dead is None


def test_rearm_waits_for_media_on_the_new_connection() -> None:
    counter, clock = Counter(), Clock()
    watchdog = MediaWatchdog(counter, timeout=1.0, clock=clock)
    counter.value += 1
    watchdog.poll()
    watchdog.rearm()
    clock.now += 5.0
    assert watchdog.loss() is None  # no media yet on the new connection: not a loss
    counter.value += 1
    watchdog.poll()
    clock.now += 1.0
    assert watchdog.loss() == "no media for 1.0 s"


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MediaWatchdog(Counter(), timeout=0)


async def test_lost_and_media_within_on_the_real_clock() -> None:
    counter = Counter()
    watchdog = MediaWatchdog(counter, timeout=0.2)
    counter.value += 1
    watchdog.poll()
    reason = await asyncio.wait_for(watchdog.lost(), 5)
    assert reason.startswith("no media for")
    assert await watchdog.media_within(0.1) is False

    async def later() -> None:
        await asyncio.sleep(0.05)
        counter.value += 1

    task = asyncio.ensure_future(later())
    assert await watchdog.media_within(5.0) is True
    await task
    mark = watchdog.mark()
    assert not watchdog.media_since(mark)
    counter.value += 1
    assert watchdog.media_since(mark)
