"""Emulator.in_thread(): a Ctrl-C while it starts leaves nothing running or pending."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading

import pytest

from avatar_rtc.emulator import Emulator


def test_ctrl_c_while_it_starts_in_a_thread_leaves_no_pending_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = Emulator(media_enabled=False)
    start = emulator.start

    async def slow_start() -> Emulator:  # the Ctrl-C lands while the start is still running
        started = await start()
        os.kill(os.getpid(), signal.SIGINT)  # (the main thread waits in in_thread() by now)
        await asyncio.sleep(30)
        return started

    monkeypatch.setattr(emulator, "start", slow_start)
    with (
        caplog.at_level(logging.ERROR, logger="asyncio"),
        pytest.raises(KeyboardInterrupt),
        emulator.in_thread(),
    ):
        pytest.fail("the block must not run")
    gc.collect()
    assert "Task was destroyed" not in caplog.text, caplog.text
    assert not [t for t in threading.enumerate() if t.name == "avatar-rtc-emulator"]
