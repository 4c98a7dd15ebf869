"""How the emulator's sending clocks keep pace with the wall clock.

A tick is sent when it is due. A clock held up by more than ``MAX_LATE`` (a busy machine, a
blocked loop) skips the ticks it missed instead of sending them in a burst, as a real sender's
capture clock runs on whether or not its sender keeps up.
"""

from __future__ import annotations

import asyncio

__all__ = ["MAX_LATE", "wait_until_due"]

MAX_LATE = 0.25  # seconds behind schedule before a clock skips instead of bursting


async def wait_until_due(due: float, period: float) -> int:
    """Sleep until ``due`` (the running loop's ``time()``, i.e. ``time.monotonic()``); return
    how many whole ``period``s to skip when already more than ``MAX_LATE`` past it, else 0."""
    delay = due - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)
        return 0
    return int(-delay / period) if delay < -MAX_LATE else 0
