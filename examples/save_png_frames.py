"""Save every Nth video frame of the avatar as a PNG file.

Run with no arguments: starts the embedded emulator, makes the avatar speak, saves every
25th frame (one per second at 25 fps) for 6 seconds into ``./avatar-frames/`` and exits.
``--service`` uses the real service instead (``AVATAR_KS``, ``AVATAR_ID``, ...).

The stream uses ``policy="all"`` so that "every Nth" counts every decoded frame; PNG
encoding runs in a worker thread so the event loop keeps receiving meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from avatar_rtc import AvatarSession, VideoFormat

from _target import target  # the real service, or an emulator started here


def write_png(rgb: npt.NDArray[np.uint8], path: Path) -> None:
    """PNG through PyAV's encoder (no imaging library needed)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, "rgb24"
    path.write_bytes(b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)]))


async def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    saved: list[Path] = []
    async with target(args.service) as options, AvatarSession(options) as avatar:
        await avatar.wait_first_frame()
        await avatar.say(args.say)
        deadline = time.monotonic() + args.duration
        count = 0
        # `async with`: the stream closes (and stops decoding for it) after the `break`.
        async with avatar.video(VideoFormat("rgb24"), policy="all", capacity=100) as video:
            async for frame in video:
                if count % args.every == 0:
                    path = out / f"frame-{frame.index:06d}.png"
                    await asyncio.to_thread(write_png, frame.array, path)
                    saved.append(path)
                    print(f"saved {path} (t={frame.presentation_time:.2f} s)")
                count += 1
                if time.monotonic() >= deadline:
                    break
        print(f"{len(saved)} PNG files from {count} frames in {out}/")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=25, help="save every Nth frame")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds to run")
    parser.add_argument("--out", default="avatar-frames", help="output directory")
    parser.add_argument("--say", default="Every twenty-fifth frame of me becomes a picture.")
    parser.add_argument("--service", action="store_true", help="use the real service (env)")
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be >= 1")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
