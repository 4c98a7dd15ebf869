#!/usr/bin/env python3
"""Time to first frame against the embedded emulator, split into phases (AvatarSession.timings).

    python scripts/ttff_emulator.py --runs 7 [--codec VP8]

Each run is a new AvatarSession (create, init-client, WHEP, ICE+DTLS, first keyframe, first
decoded frame) against one emulator in this process; the first run also pays imports and
encoder start-up and is reported apart. Prints medians per phase and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_rtc import AvatarSession, IceOptions, Secret, SessionOptions
from avatar_rtc.emulator import DEFAULT_VISUAL_ID, Emulator
from avatar_rtc.emulator.media import AvatarMediaOptions
from avatar_rtc.emulator.media.options import VideoCodec

PHASES = ("session", "offer_answer", "ice_dtls", "first_keyframe", "first_frame", "total")


async def measure(runs: int, codec: VideoCodec) -> list[dict[str, float | None]]:
    results: list[dict[str, float | None]] = []
    async with Emulator(media_options=AvatarMediaOptions(video_codec=codec)) as emulator:
        options = SessionOptions(
            api_url=emulator.api_url,
            ks=Secret(emulator.ks),
            avatar_id=DEFAULT_VISUAL_ID,
            ice=IceOptions(host_addresses=("127.0.0.1",)),
            video_codecs=(codec,),
        )
        for _ in range(runs + 1):
            session = AvatarSession(options)
            async with session:
                await session.wait_first_frame(timeout=20)
                results.append(session.timings.as_dict())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--codec", choices=("H264", "VP8"), default="H264")
    args = parser.parse_args()
    results = asyncio.run(measure(args.runs, args.codec))
    cold, warm = results[0], results[1:]
    medians = {
        phase: statistics.median(float(r[phase] or 0.0) for r in warm) * 1000 for phase in PHASES
    }
    print(f"emulator ({args.codec}): median of {len(warm)} warm runs, ms")
    for phase in PHASES:
        print(f"  {phase:<15}{medians[phase]:8.1f}")
    print(f"  cold first run total: {float(cold['total'] or 0.0) * 1000:.1f} ms")
    print(json.dumps({"codec": args.codec, "median_ms": medians, "cold": cold, "runs": warm}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
