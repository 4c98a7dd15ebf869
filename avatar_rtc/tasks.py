"""Ending a background task from a coroutine that may itself be cancelled meanwhile.

``task.cancel()`` then ``with contextlib.suppress(CancelledError): await task`` is the usual
way to stop a helper task, and it has a trap: if the *caller* is cancelled while it waits, its
own ``CancelledError`` is suppressed too and the caller carries on as if nothing happened.
A ``close()`` cancelled at that moment then went on to wait for an event that never came (a
reconnect loop, cancelled while it stopped its probes, looped back to watching media: a CI run
hung for 120 s). :func:`cancel_and_wait` and :func:`wait_ended` end only the task's own
cancellation.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait", "wait_ended"]


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended.

    The task's ``CancelledError`` ends here; a cancellation of the caller while it waits is
    raised, never swallowed. An exception the task ended with is raised too (callers that do
    not care suppress ``Exception``).
    """
    if task is None:
        return
    task.cancel()
    await wait_ended(task)


async def wait_ended(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` has ended, without cancelling it: its ``CancelledError`` ends
    here, the caller's own cancellation is raised, so is an exception the task ended with.

    "Own" means requested while it waits: cleanup that runs after the caller was cancelled
    (and took that cancellation) still waits for its tasks.
    """
    current = asyncio.current_task()
    requested = 0 if current is None else current.cancelling()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > requested:
            raise
