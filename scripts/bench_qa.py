"""How much faster than real time `avatar-rtc qa FILE` analyses a recording.

Records the embedded emulator speaking (``--seconds`` of media), loops that file with ffmpeg
(stream copy) to ``--length`` seconds, then times :func:`avatar_rtc.qa.analyse_file` on it
``--runs`` times and prints each run and the median speed (media seconds per wall second).

    python3 scripts/bench_qa.py --length 60 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from avatar_rtc import AvatarSession, IceOptions, Secret, SessionOptions
from avatar_rtc.emulator import Emulator
from avatar_rtc.qa import analyse_file

SPEECH = (
    "The quick brown fox jumps over the lazy dog. "
    "Artificial avatars must keep their lips in sync with the voice."
)


async def record(path: Path, seconds: float) -> None:
    async with Emulator() as emulator:
        options = SessionOptions(
            api_url=emulator.api_url,
            ks=Secret(emulator.ks),
            ice=IceOptions(host_addresses=("127.0.0.1",)),
        )
        async with AvatarSession(options) as session:
            session.record(path)  # finalised when the session closes
            await session.wait_first_frame()
            await session.say(SPEECH)
            await asyncio.sleep(seconds)


def loop_to(source: Path, target: Path, length: float) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source),
         "-t", f"{length}", "-c", "copy", str(target)],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds recorded")
    parser.add_argument("--length", type=float, default=60.0, help="seconds analysed")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        short, long = Path(folder, "short.mkv"), Path(folder, "long.mkv")
        asyncio.run(record(short, args.seconds))
        loop_to(short, long, args.length)
        speeds = []
        for run in range(args.runs):
            started = time.perf_counter()
            report = analyse_file(long)
            wall = time.perf_counter() - started
            duration = report.duration or args.length
            speeds.append(duration / wall)
            print(f"run {run + 1}: {duration:.1f} s of media in {wall:.2f} s: {speeds[-1]:.1f}x")
        print(f"median: {statistics.median(speeds):.1f}x real time")


if __name__ == "__main__":
    main()
