"""Feed the avatar's video to OpenCV: BGR frames, mouth motion, an annotated picture.

Run with no arguments: starts the embedded emulator, makes the avatar speak, measures for 6
seconds how much the mouth region changes from frame to frame (``cv2.absdiff``), saves the
frame where it moved most, with the region drawn on it, as ``avatar-opencv.png`` and exits.
``--service`` uses the real service instead (``AVATAR_KS``, ``AVATAR_ID``, ...).

Frames are asked for as ``bgr24``, OpenCV's channel order, so ``frame.array`` goes to cv2 as
it is. Needs OpenCV: ``pip install "opencv-python-headless<5"`` (also in the ``qa`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import numpy.typing as npt

from avatar_rtc import AvatarSession, VideoFormat

from _target import target  # the real service, or an emulator started here

try:
    import cv2
except ImportError:
    sys.exit(
        "opencv_frames.py needs OpenCV: pip install 'opencv-python-headless<5' "
        "(or the avatar-rtc[qa] extra)"
    )

GREEN = (0, 255, 0)  # BGR


def mouth_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the lower middle of the frame: a centred talking head's mouth."""
    x, y = int(width * 0.35), int(height * 0.58)
    return x, y, int(width * 0.30), int(height * 0.20)


async def main(args: argparse.Namespace) -> None:
    async with target(args.service) as options, AvatarSession(options) as avatar:
        first = await avatar.wait_first_frame()
        x, y, w, h = mouth_box(first.width, first.height)
        await avatar.say(args.say)

        motion: dict[bool, list[float]] = {True: [], False: []}  # by "avatar speaking"
        best: tuple[float, npt.NDArray[np.uint8] | None] = (-1.0, None)
        previous = None
        deadline = time.monotonic() + args.duration
        # `async with`: the stream closes (and stops decoding for it) after the `break`.
        async with avatar.video(VideoFormat("bgr24"), policy="all", capacity=50) as video:
            async for frame in video:
                bgr = frame.array  # (H, W, 3) uint8, B-G-R
                if previous is None:
                    b, g, r = (int(v) for v in bgr[8, 8])
                    print(f"{frame.width}x{frame.height} bgr24; top-left pixel B={b} G={g} R={r}")
                gray = cv2.cvtColor(bgr[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
                if previous is not None:
                    moved = float(cv2.absdiff(gray, previous).mean())
                    motion[avatar.speaking].append(moved)
                    if moved > best[0]:
                        best = (moved, bgr.copy())  # the stream reuses its buffers: keep a copy
                previous = gray
                if time.monotonic() >= deadline:
                    break

        for speaking, values in motion.items():
            label = "speaking" if speaking else "quiet"
            mean = float(np.mean(values)) if values else 0.0
            print(f"mouth motion while {label}: {mean:.2f} (mean abs diff, {len(values)} frames)")
        moved, picture = best
        if picture is not None:
            cv2.rectangle(picture, (x, y), (x + w, y + h), GREEN, 2)
            cv2.putText(
                picture, f"motion {moved:.1f}", (x, y - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, GREEN, 2
            )
            cv2.imwrite(args.out, picture)
            print(f"saved {args.out} (most motion: {moved:.2f})")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds to run")
    parser.add_argument("--out", default="avatar-opencv.png", help="annotated frame (PNG/JPEG)")
    parser.add_argument("--say", default="Hello OpenCV. Watch my mouth, then I stop talking.")
    parser.add_argument("--service", action="store_true", help="use the real service (env)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
