"""wait_until_due: sleep to a tick; skip the ticks missed when held up past MAX_LATE."""

from __future__ import annotations

import asyncio

from avatar_rtc.emulator.media.pacing import MAX_LATE, wait_until_due


async def test_a_tick_ahead_is_slept_for() -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() + 0.05
    assert await wait_until_due(due, 0.02) == 0
    assert loop.time() >= due


async def test_a_tick_a_little_late_is_sent_at_once() -> None:
    due = asyncio.get_running_loop().time() - MAX_LATE / 2
    assert await wait_until_due(due, 0.02) == 0


async def test_a_clock_held_up_past_max_late_skips_the_ticks_it_missed() -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() - 0.5
    skipped = await wait_until_due(due, 0.02)
    # 0.5 s late, and whatever time a busy machine took since: whole 20 ms ticks of it
    assert 25 <= skipped <= int((loop.time() - due) / 0.02)
