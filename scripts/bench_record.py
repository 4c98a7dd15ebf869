"""CPU cost of recording: copy vs encode vs aiortc's MediaRecorder, on the same input.

Input: N seconds of 512x512 25 fps H264 (baseline, GOP 25) + Opus 48 kHz stereo 20 ms, made
with PyAV. ``copy`` gets the compressed frames; ``encode`` (our default libx264 preset
"veryfast", and "medium" as MediaRecorder uses) and ``MediaRecorder`` get the same
media decoded beforehand (decoding is measured once, separately: the media layer pays it
whichever recorder consumes the frames). Frames are fed as fast as possible, not paced.

Per run: process CPU (all threads: writer, encoder threads) and the CPU of the calling thread
(what the event loop pays). Medians over the runs, ratios against copy.

    python scripts/bench_record.py [--seconds 10] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import NotRequired, TypedDict

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_rtc.record import EncodeOptions, Recorder, RecordOptions  # noqa: E402
from avatar_rtc.rtc.encoded_frame import EncodedFrame  # noqa: E402
from tests.record.synth import Scenario, encoded_frames  # noqa: E402

Decoded = list[tuple[str, av.VideoFrame | av.AudioFrame, float]]


class Measured(TypedDict):
    """One method's figures (medians over the runs); main() adds the two ratios."""

    cpu_s: float
    caller_thread_cpu_s: float
    wall_s: float
    file_bytes: int
    runs: int
    cpu_all: list[float]
    ratio_vs_copy: NotRequired[float | None]
    cpu_percent_of_realtime: NotRequired[float]


def decode_all(frames: list[EncodedFrame]) -> Decoded:
    vdec = av.CodecContext.create("h264", "r")
    vdec.thread_count = 1
    adec = av.CodecContext.create("opus", "r")
    out: Decoded = []
    for ef in frames:
        dec = vdec if ef.kind == "video" else adec
        for frame in dec.decode(av.Packet(ef.data)):
            out.append((ef.kind, frame, ef.presentation_time))
    return out


def run_copy(frames: list[EncodedFrame], path: Path) -> None:
    recorder = Recorder(path).start()
    for frame in frames:
        recorder.write(frame)
    recorder.stop()


def run_encode(decoded: Decoded, path: Path, preset: str = "veryfast") -> None:
    # Same codecs as MediaRecorder picks for .mp4 (libx264 + aac), our defaults otherwise.
    enc = EncodeOptions(video_codec="libx264", audio_codec="aac", preset=preset)
    recorder = Recorder(path, RecordOptions(mode="encode", encode=enc)).start()
    for kind, frame, t in decoded:
        if kind == "video":
            assert isinstance(frame, av.VideoFrame)
            recorder.write_video(frame, t)
        else:
            assert isinstance(frame, av.AudioFrame)
            recorder.write_audio(frame, t)
    recorder.stop()


def run_media_recorder(decoded: Decoded, path: Path) -> None:
    from aiortc.contrib.media import MediaRecorder
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    origin = next(t for kind, _, t in decoded if kind == "video")

    class ListTrack(MediaStreamTrack):
        def __init__(self, kind: str, done: asyncio.Event) -> None:
            super().__init__()
            self.kind = kind
            self._done = done
            rate = 90000 if kind == "video" else 48000
            self._frames = []
            for k, frame, t in decoded:
                if k == kind and t >= origin:
                    frame.pts = round((t - origin) * rate)
                    frame.time_base = Fraction(1, rate)
                    self._frames.append(frame)
            self._i = 0

        async def recv(self) -> av.VideoFrame | av.AudioFrame:
            if self._i >= len(self._frames):
                self.stop()
                self._done.set()
                raise MediaStreamError
            frame = self._frames[self._i]
            self._i += 1
            await asyncio.sleep(0)  # let the other track's task run, as live tracks would
            return frame

    async def main() -> None:
        recorder = MediaRecorder(str(path))
        video_done, audio_done = asyncio.Event(), asyncio.Event()
        recorder.addTrack(ListTrack("video", video_done))
        recorder.addTrack(ListTrack("audio", audio_done))
        await recorder.start()
        await video_done.wait()
        await audio_done.wait()
        await recorder.stop()

    asyncio.run(main())


def measure(fn: Callable[[Path], None], runs: int, ext: str) -> Measured:
    cpu: list[float] = []
    caller: list[float] = []
    wall: list[float] = []
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            path = Path(tmp) / f"run{i}{ext}"
            c0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
            fn(path)
            cpu.append(time.process_time() - c0)
            caller.append(time.thread_time() - t0)
            wall.append(time.perf_counter() - w0)
            size = path.stat().st_size
    return {
        "cpu_s": statistics.median(cpu),
        "caller_thread_cpu_s": statistics.median(caller),
        "wall_s": statistics.median(wall),
        "file_bytes": size,
        "runs": runs,
        "cpu_all": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    frames = encoded_frames(Scenario(duration=args.seconds, audio_lead=0.0))
    c0 = time.process_time()
    decoded = decode_all(frames)
    decode_cpu = time.process_time() - c0

    results = {
        "copy": measure(lambda p: run_copy(frames, p), args.runs, ".mp4"),
        "encode": measure(lambda p: run_encode(decoded, p), args.runs, ".mp4"),
        "encode_preset_medium": measure(
            lambda p: run_encode(decoded, p, "medium"), args.runs, ".mp4"
        ),
        "aiortc_MediaRecorder": measure(
            lambda p: run_media_recorder(decoded, p), args.runs, ".mp4"
        ),
    }
    base = float(results["copy"]["cpu_s"])
    print(f"input: {args.seconds:g} s of 512x512 25 fps H264 + Opus; {args.runs} runs, medians")
    print(
        f"decoding the input once (paid by the media layer for encode/MediaRecorder): "
        f"{decode_cpu:.3f} s CPU"
    )
    print(
        f"{'method':<22}{'CPU s':>9}{'x copy':>9}{'caller CPU s':>14}{'wall s':>9}"
        f"{'% of realtime':>15}{'file KB':>10}"
    )
    for name, r in results.items():
        cpu = float(r["cpu_s"])
        r["ratio_vs_copy"] = cpu / base if base else None
        r["cpu_percent_of_realtime"] = 100 * cpu / args.seconds
        print(
            f"{name:<22}{cpu:>9.3f}{cpu / base:>9.1f}{r['caller_thread_cpu_s']:>14.3f}"
            f"{r['wall_s']:>9.3f}{100 * cpu / args.seconds:>14.2f}%"
            f"{int(r['file_bytes']) // 1024:>10}"
        )
    report = {
        "input_seconds": args.seconds,
        "decode_cpu_s": decode_cpu,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
