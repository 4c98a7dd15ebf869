"""A plain synchronous program: no asyncio in sight, only the blocking API."""

from __future__ import annotations

import json
import sys
import threading

from avatar_rtc.media import (
    AudioFormat,
    BackgroundLoop,
    TrackDecoder,
    VideoFormat,
    iter_audio,
    iter_video,
)
from tests.media.loopback import open_loopback


def main() -> int:
    with BackgroundLoop() as bg:
        lb = bg.run(open_loopback(), timeout=20)
        pattern = lb.video_track.pattern
        counters = []
        shapes = set()
        for frame in iter_video(lb.video, VideoFormat("rgb24"), loop=bg, timeout=5):
            counters.append(pattern.read_counter(frame.array))
            shapes.add(frame.array.shape)
            if len(counters) >= 20:
                break  # leaving the loop closes the stream
        samples = 0
        with iter_audio(lb.audio, AudioFormat(sample_rate=16000), loop=bg, timeout=5) as audio:
            for chunk in audio:
                samples += chunk.data.shape[0]
                if samples >= 16000:
                    break
        # the stream closed on break: no decoder keeps running for the video track
        from avatar_rtc.media import decoder_for

        video_decoding = bg.run(_running(decoder_for(lb.video)))
        bg.run(lb.close(), timeout=10)
    print(
        json.dumps(
            {
                "counters": counters,
                "shapes": [list(s) for s in shapes],
                "samples": samples,
                "video_decoding": video_decoding,
                "threads": [
                    t.name for t in threading.enumerate() if t.name.startswith("avatar-rtc")
                ],
            }
        )
    )
    return 0


async def _running(dec: TrackDecoder) -> bool:
    import gc

    gc.collect()
    return bool(dec.running)


if __name__ == "__main__":
    sys.exit(main())
