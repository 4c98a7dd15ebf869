"""run_job: a job whose media is lost for good ends there, failed, with the loss's exit code."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from avatar_rtc.emulator import Emulator
from avatar_rtc.fleet.jobs import FleetJob, JobKind
from avatar_rtc.fleet.runner import run_job
from avatar_rtc.rtc.reconnect import ReconnectPolicy
from tests.support import emulator_options, wait_until

DURATION = 60.0  # the job would run this long: a loss must end it at once


@pytest.mark.parametrize("kind", ["decode", "copy-record"])
async def test_a_loss_for_good_ends_the_job_failed(kind: JobKind, tmp_path: Path) -> None:
    async with Emulator() as emu:
        options = emulator_options(emu, detect_speech=False, reconnect=ReconnectPolicy.disabled())
        job = FleetJob(0, kind, options, duration=DURATION,
                       out_dir=None if kind == "decode" else str(tmp_path))  # fmt: skip
        running = asyncio.create_task(run_job(job))

        def viewed() -> bool:
            return any(s.media is not None and emu.avatar_media(s.session_id).viewers
                       for s in emu.sessions)  # fmt: skip

        await wait_until(viewed, within=30)
        await asyncio.sleep(1.0)  # media flowing
        (session,) = emu.sessions
        media = emu.avatar_media(session.session_id)
        (resource_id,) = media.viewers
        lost_at = time.monotonic()
        await media.disconnect_viewer(resource_id)  # the sender is gone
        result = await asyncio.wait_for(running, DURATION)
    # was: "ok" after the whole duration, exit 0
    assert not result.ok and result.exit_code == 3, result
    assert time.monotonic() - lost_at < DURATION / 2
    assert "media lost" in (result.error or "")
    if kind == "copy-record":
        assert result.file is not None and result.media_seconds and result.media_seconds > 0.5
