"""Memory of a receive session with no consumer at all, measured in a fresh process.

python -m tests.media.memory_probe SECONDS   -> one JSON line

Run it with ``MALLOC_MMAP_THRESHOLD_`` set (see ``PROBE_ENV`` in test_streams.py) so that RSS
follows live memory rather than the allocator's high-water marks.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from avatar_rtc.media import AudioStream, VideoStream
from tests.media.loopback import Loopback, loopback, rss_bytes


@dataclass(frozen=True)
class MemoryReport:
    slope_mb_s: float  # RSS trend after the warm-up
    growth_mb: float
    objects_per_s: float  # trend of the live Python objects (gc-tracked)
    video_dropped: int
    audio_dropped: int


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(t - t[0], y, 1)[0])


async def _memory_flat(lb: Loopback, seconds: float) -> MemoryReport:
    """RSS and object trends after a warm-up, in a run without any consumer."""
    video = VideoStream(lb.video)  # never read: 'latest' keeps 2
    audio = AudioStream(lb.audio)  # never read: 'all' caps at 10 s, then drops (warns once)
    warm_up = 12.0  # the audio queue fills for its first 10 s: measure once it is capped
    await asyncio.sleep(warm_up)
    samples: list[tuple[float, float, int]] = []
    t_end = time.monotonic() + seconds - warm_up
    while time.monotonic() < t_end:
        gc.collect()
        samples.append((time.monotonic(), rss_bytes() / 2**20, len(gc.get_objects())))
        await asyncio.sleep(1.0)
    video.close()
    audio.close()
    t, mb, objects = (np.array(column, dtype=float) for column in zip(*samples, strict=True))
    return MemoryReport(
        slope_mb_s=_slope(t, mb),
        growth_mb=float(mb[-1] - mb[0]),
        objects_per_s=_slope(t, objects),
        video_dropped=video.stats().dropped,
        audio_dropped=audio.stats().dropped,
    )


async def main(seconds: float) -> None:
    async with loopback(size=(640, 480)) as lb:
        report = await _memory_flat(lb, seconds)
    print(json.dumps(asdict(report)))


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))
