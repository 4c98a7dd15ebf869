#!/usr/bin/env python3
"""The media work of one decode-to-numpy session, alone: the CPU no receiver can save.

A session decoded to numpy pays, whatever receives it: H264 decode, the yuv420p -> rgb24
conversion, and Opus decode. Plain aiortc pays the same (the same FFmpeg), so this floor bounds
how far below aiortc's CPU per session any receiver can go (``bench_scale.py`` measures the
whole sessions). The stream is the fan-out load generator's (512x512 25 fps H264 about
1 Mbit/s + Opus, its 4-second loop), decoded on this thread with the library's own decoders
and ``scale`` (the rgb24 array taken as ``VideoFrame.to_ndarray`` takes it: the converted
frame's own buffer). CPU time is ``time.thread_time``, on warm caches: in a live receiver (8
sessions on one event loop, ``profile_receive.py``) the same work measured about 1.8x this.

Prints µs per video frame (decode, rgb24) and per Opus packet, and the floor in % of one core
for a session (the loop's frames and packets a second: 25 and 50): medians of ``--runs``
passes over the loop.

    python scripts/bench_media_floor.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402

from avatar_rtc.emulator.fanout.loop import AUDIO_FRAMES_PER_SECOND, encoded_loop  # noqa: E402
from avatar_rtc.emulator.media.options import AvatarMediaOptions  # noqa: E402
from avatar_rtc.media.codecs import create_decoder  # noqa: E402
from avatar_rtc.media.scale import scale  # noqa: E402
from avatar_rtc.rtc.jitter_buffer import parse_video_payload  # noqa: E402


def access_units(payloads: tuple[tuple[bytes, ...], ...]) -> list[bytes]:
    """Each frame's RTP payloads as one Annex-B access unit, depayloaded as our receiver does."""
    return [b"".join(parse_video_payload("H264", p).data for p in frame) for frame in payloads]


def video_pass(units: list[bytes]) -> tuple[float, float]:
    """One pass with a fresh decoder: (decode, rgb24) µs of CPU per decoded frame."""
    decoder = create_decoder("H264")
    decode_ns = convert_ns = frames = 0
    for unit in units:
        started = time.thread_time_ns()
        decoded = decoder.decode(av.Packet(unit))
        decoded_at = time.thread_time_ns()
        for frame in decoded:
            plane: Any = scale(frame, format="rgb24").planes[0]
            np.frombuffer(plane, dtype=np.uint8)
            frames += 1
        decode_ns += decoded_at - started
        convert_ns += time.thread_time_ns() - decoded_at
    if frames == 0:
        raise SystemExit("bench_media_floor: the decoder returned no frame")
    return decode_ns / frames / 1000, convert_ns / frames / 1000


def audio_pass(packets: tuple[bytes, ...]) -> float:
    """One pass with a fresh Opus decoder: µs of CPU per packet, to a numpy array."""
    decoder = create_decoder("opus")
    started = time.thread_time_ns()
    for packet in packets:
        for frame in decoder.decode(av.Packet(packet)):
            frame.to_ndarray()
    return (time.thread_time_ns() - started) / len(packets) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="passes over the loop (median)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    o = AvatarMediaOptions()  # the loop the fan-out source encodes (its defaults)
    loop = encoded_loop(o.width, o.height, o.fps, "H264", o.video_bitrate)
    units = access_units(tuple(frame.payloads for frame in loop.video))
    video = [video_pass(units) for _ in range(args.runs)]
    audio = [audio_pass(loop.audio) for _ in range(args.runs)]
    decode_us = statistics.median(v[0] for v in video)
    rgb24_us = statistics.median(v[1] for v in video)
    opus_us = statistics.median(audio)
    per_second = (decode_us + rgb24_us) * loop.fps + opus_us * AUDIO_FRAMES_PER_SECOND
    floor = per_second / 10_000  # µs of CPU a second -> % of a core
    print(
        f"{len(units)} frames, {len(loop.audio)} Opus packets, medians of {args.runs}: "
        f"H264 decode {decode_us:.0f} µs/frame, rgb24 {rgb24_us:.0f} µs/frame, "
        f"Opus {opus_us:.1f} µs/packet -> {floor:.2f} % of a core per session"
    )
    if args.json:
        figures = {
            "runs": args.runs,
            "decode_us_per_frame": decode_us,
            "rgb24_us_per_frame": rgb24_us,
            "opus_us_per_packet": opus_us,
            "floor_percent_per_session": floor,
        }
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
