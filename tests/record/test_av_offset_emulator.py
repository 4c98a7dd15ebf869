"""A/V offset in a file recorded from the emulator: mouth movement vs. speech onset.

The emulator schedules both on one media clock and logs them (``turn_start``: the first
sample of the speech; ``mouth_open``: the first frame with the mouth open). Read back from the
file (speech starts where the idle digital silence ends; the mouth with the emulator's own
detector), the offset between the two must match what the emulator scheduled within 40 ms.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest

from avatar_rtc import AvatarSession
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import AvatarMedia
from avatar_rtc.emulator.media.avatar_media import MOUTH_OPEN
from avatar_rtc.emulator.media.face import mouth_opening
from tests.record.filecheck import ffprobe_streams
from tests.support import emulator_options, wait_until

pytestmark = pytest.mark.slow

SILENCE_DB = -60.0  # the idle avatar sends digital silence; speech starts well above this


def _first_mouth_open(path: Path, after: float) -> float:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time)
            if t >= after and mouth_opening(frame.to_ndarray(format="rgb24")) >= MOUTH_OPEN:
                return t
    raise AssertionError("the mouth never opened in the recorded video")


def _speech_start(path: Path, after: float) -> float:
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            assert frame.time is not None
            t = float(frame.time)
            pcm = frame.to_ndarray().astype(np.float64)  # planar float in [-1, 1]
            level = 20 * np.log10(max(float(np.sqrt(np.mean(pcm**2))), 1e-9))
            if t >= after and level > SILENCE_DB:
                return t
    raise AssertionError("no speech onset in the recorded audio")


@pytest.mark.parametrize("extension", ["mkv", "mp4"])
async def test_mouth_vs_speech_onset_in_the_file_within_40ms(
    tmp_path: Path, extension: str
) -> None:
    out = tmp_path / f"av.{extension}"
    async with Emulator() as emulator:
        session = AvatarSession(emulator_options(emulator))
        async with session:
            await session.wait_first_frame(timeout=20)
            # The file's A/V alignment on sender-report timing: before it, arrival timing is only
            # as good as a busy machine's arrivals (see tests/media/test_av_sync_emulator.py).
            await wait_until(lambda: session.video_pipeline.stats().clock_source == "rtcp-sr", 30)
            video = session.video_pipeline
            switch = video.stats().clock_correction
            recorder = session.record(out)
            # Some idle face first (the onset is not at the file start). Meanwhile the switch's
            # correction slews away at 10 % of media time: a few tens of ms usually, but arrival
            # timing on a loaded machine can be off by 100+ ms, which takes over a second.
            await asyncio.sleep(1.0)
            await wait_until(lambda: abs(video.stats().clock_correction) < 0.001, 30)
            turn_id = await session.say("Hello there. This sentence checks lip sync.")
            await session.wait_idle(timeout=20)
            await asyncio.sleep(0.3)
            after = {
                s.kind: (s.clock_source, round(s.clock_correction, 4))
                for s in (video.stats(), session.audio_pipeline.stats())
            }
            assert session.session_id is not None
            media = emulator.session(session.session_id).media
            assert isinstance(media, AvatarMedia)
            onset = media.events(turn_id, "turn_start")
            mouth = media.events(turn_id, "mouth_open")
        stats = recorder.stats()

    assert onset and mouth, "the emulator did not log the turn's start and mouth opening"
    scheduled = mouth[0].media_time - onset[0].media_time
    kinds = sorted(str(s["codec_type"]) for s in ffprobe_streams(out))
    assert kinds == ["audio", "video"]

    # The file starts ~1 s before the turn; skip its first half second of idle face.
    audio_onset = _speech_start(out, after=0.5)
    mouth_open = _first_mouth_open(out, after=0.5)
    measured = mouth_open - audio_onset
    print(
        f"scheduled {scheduled * 1000:.1f} ms, measured {measured * 1000:.1f} ms, "
        f"video clock correction at the switch {switch * 1000:.1f} ms"
    )
    assert abs(measured - scheduled) <= 0.040, (
        f"mouth-vs-onset offset in the file {measured * 1000:.1f} ms, "
        f"scheduled {scheduled * 1000:.1f} ms; video clock correction at the switch "
        f"{switch * 1000:.1f} ms, clocks after the turn {after} (recorder stats: {stats})"
    )
