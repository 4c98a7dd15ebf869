"""Memory of a receive session with no consumer at all, measured in a fresh process.

python -m tests.media.memory_probe SECONDS   -> one JSON line
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

import numpy as np

from avatar_rtc.media import AudioStream, VideoStream
from tests.media.loopback import Loopback, loopback, rss_bytes


async def _memory_flat(lb: Loopback, seconds: float) -> tuple[float, float, int, int]:
    """RSS (MB) slope and growth after a warm-up, in a run without any consumer."""
    video = VideoStream(lb.video)  # never read: 'latest' keeps 2
    audio = AudioStream(lb.audio)  # never read: 'all' caps at 10 s, then drops (warns)
    warm_up = 12.0  # the audio queue fills for its first 10 s: measure once it is capped
    await asyncio.sleep(warm_up)
    samples: list[tuple[float, float]] = []
    t_end = time.monotonic() + seconds - warm_up
    while time.monotonic() < t_end:
        gc.collect()
        samples.append((time.monotonic(), rss_bytes() / 2**20))
        await asyncio.sleep(1.0)
    video.close()
    audio.close()
    t, mb = np.array(samples).T
    slope = float(np.polyfit(t - t[0], mb, 1)[0])
    return slope, float(mb[-1] - mb[0]), video.stats().dropped, audio.stats().dropped


async def main(seconds: float) -> None:
    async with loopback(size=(640, 480)) as lb:
        slope, growth, video_dropped, audio_dropped = await _memory_flat(lb, seconds)
    report = {
        "slope_mb_s": slope,
        "growth_mb": growth,
        "video_dropped": video_dropped,
        "audio_dropped": audio_dropped,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))
