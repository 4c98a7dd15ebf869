"""cancel_and_wait / wait_ended: the task's cancellation ends there, the caller's does not."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from avatar_rtc.tasks import cancel_and_wait, wait_ended


async def _slow_to_stop() -> None:
    """A helper task whose cleanup takes a few loop iterations (as a probe closing a socket)."""
    try:
        await asyncio.sleep(3600)
    finally:
        for _ in range(5):
            await asyncio.sleep(0)


async def test_the_task_is_cancelled_and_ended_and_the_caller_goes_on() -> None:
    task = asyncio.create_task(_slow_to_stop())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to do
    await cancel_and_wait(task)  # already ended: nothing to do


async def _stopper(task: asyncio.Task[None], after: list[str], *, suppressing: bool) -> None:
    if suppressing:  # the pattern cancel_and_wait replaces
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        await cancel_and_wait(task)
    after.append("went on")  # a cancelled stopper must never get here
    await asyncio.sleep(3600)  # e.g. a loop waiting for the next event


@pytest.mark.parametrize("suppressing", [False, True], ids=["cancel_and_wait", "suppress"])
async def test_a_caller_cancelled_while_it_waits_is_cancelled(suppressing: bool) -> None:
    helper = asyncio.create_task(_slow_to_stop())
    await asyncio.sleep(0)
    after: list[str] = []
    stopper = asyncio.create_task(_stopper(helper, after, suppressing=suppressing))
    await asyncio.sleep(0)  # the stopper now waits for the helper's cleanup
    stopper.cancel()
    if suppressing:  # the trap, shown: the cancellation was swallowed, the stopper hangs
        done, _ = await asyncio.wait({stopper}, timeout=0.5)
        assert not done and after == ["went on"]
        stopper.cancel()
    await asyncio.wait({stopper})  # (no bound: pytest-timeout guards a hang)
    assert stopper.cancelled()
    if not suppressing:
        assert after == []


async def test_an_exception_the_task_ended_with_is_raised() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task)


async def test_wait_ended_does_not_cancel() -> None:
    async def short() -> str:
        await asyncio.sleep(0.01)
        return "done"

    task = asyncio.create_task(short())
    await wait_ended(task)
    assert task.result() == "done"


async def test_cleanup_after_the_caller_took_a_cancellation_still_waits() -> None:
    # As in a close() run from an ``except CancelledError`` block: the caller's earlier
    # cancellation is no reason to cut the cleanup short.
    finished: list[str] = []

    async def caller() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            helper = asyncio.create_task(_slow_to_stop())
            await asyncio.sleep(0)
            await cancel_and_wait(helper)
            finished.append("cleanup done")
            raise

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled() and finished == ["cleanup done"]
