"""Feed the avatar's video into a numpy "model" at a fixed rate.

Run with no arguments: starts the embedded emulator, makes the avatar speak, runs the model
at 5 inferences per second for 8 seconds and exits. ``--service`` uses the real service
instead (``AVATAR_KS``, ``AVATAR_ID``, optionally ``AVATAR_API_URL`` / ``AVATAR_VOICE_ID``).

The video stream is ``policy="latest"`` with capacity 1: frames arriving while the model
waits are dropped (and counted), so each inference sees the newest picture, never a backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import numpy.typing as npt

from avatar_rtc import AvatarSession, VideoFormat

from _target import target  # the real service, or an emulator started here

SIZE = (224, 224)  # what a typical vision model takes


class MouthModel:
    """A stand-in for a real model: how dark the mouth region is, 0 (closed) .. 1 (open)."""

    def __init__(self, size: tuple[int, int]) -> None:
        w, h = size
        self.rows = slice(int(h * 0.60), int(h * 0.76))
        self.cols = slice(int(w * 0.44), int(w * 0.56))

    def __call__(self, rgb: npt.NDArray[np.uint8]) -> float:
        patch = rgb[self.rows, self.cols].astype(np.float32)
        dark = (patch.max(axis=2) < 90).mean()
        return float(min(1.0, dark * 1.5))


async def main(args: argparse.Namespace) -> None:
    model = MouthModel(SIZE)
    async with target(args.service) as options, AvatarSession(options) as avatar:
        avatar.on(
            "speaking_started", lambda e: print(f"  [speaking started at {e.data.time:.2f} s]")
        )
        avatar.on("speaking_ended", lambda e: print(f"  [speaking ended at {e.data.time:.2f} s]"))
        first = await avatar.wait_first_frame()
        print(f"first frame {first.width}x{first.height} after {avatar.timings.total:.3f} s")
        video = avatar.video(VideoFormat(size=SIZE), capacity=1, policy="latest")
        await avatar.say(args.say)

        period = 1.0 / args.rate
        deadline = time.monotonic() + args.duration
        next_tick = time.monotonic()
        while time.monotonic() < deadline:
            frame = await asyncio.wait_for(video.recv(), 5.0)
            score = model(frame.array)  # (224, 224, 3) uint8, RGB
            bar = "#" * round(score * 20)
            print(f"t={frame.presentation_time:6.2f} s  mouth={score:.2f} {bar}")
            next_tick += period
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

        stats = avatar.stats()
        print(
            f"video: {stats.video.frames} frames received, {stats.video.lost} packets lost; "
            f"frames skipped to hold {args.rate:g}/s: {stats.stream_drops}; "
            f"utterances heard: {stats.utterances}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5.0, help="inferences per second")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds to run")
    parser.add_argument("--say", default="Hello! I am a synthetic avatar. Watch my mouth move.")
    parser.add_argument("--service", action="store_true", help="use the real service (env)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
