#!/usr/bin/env python3
"""Receive-path benchmark: our ReceivePipeline vs. a plain aiortc receiver, on 127.0.0.1.

The sender (aiortc, the test pattern of tests/media/loopback.py: frame counter drawn in the
pixels, 30 fps, plus a 48 kHz tone track) runs in a **separate process**, so the receiver's
process CPU time is the receiver's alone. Both processes stamp with ``time.monotonic()``
(CLOCK_MONOTONIC is system-wide on Linux), so "sender hand-off -> numpy" latency is exact:
hand-off = the moment the sender's track returned frame N to aiortc's encoder; numpy = the
moment the receiver holds frame N as an RGB ndarray (N read back from the pixels).

Modes (same sender stream each time):
- ours:   ReceivePipeline + VideoStream(rgb24, latest) + AudioStream
- aiortc: track.recv() + frame.to_ndarray(format="rgb24") (+ audio track.recv())

Figures per run: median/p90 latency, offer -> first numpy frame, receiver CPU (% of one core,
process CPU time / wall over the steady part). Several runs alternate the modes; medians are
reported with ours/aiortc ratios. Prints a table and a JSON line.

    python scripts/bench_receive.py --runs 3 --seconds 8 --size 1280x720

Environment: BENCH_NO_AUDIO=1 consumes video only (note: aiortc decodes audio anyway, ours
only when an AudioStream exists); BENCH_THREADS=1 adds CPU per thread (``--one`` runs);
BENCH_DEBUG=1 logs avatar_rtc at DEBUG (``--one`` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------- sender
async def run_sender(w: int, h: int, codec: str) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from tests.media.loopback import BeepAudioTrack, MediaStart, Pattern, PatternVideoTrack
    from tests.support import loopback_ice

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    offer = json.loads(await reader.readline())
    start = MediaStart()
    vtrack = PatternVideoTrack(start, 30, Pattern(w, h, noise=True))
    atrack = BeepAudioTrack(start, 1.0)
    with loopback_ice():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(**offer))
        for t in pc.getTransceivers():
            t.sender.replaceTrack(vtrack if t.kind == "video" else atrack)
            t.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
    print(json.dumps({"sdp": pc.localDescription.sdp, "type": "answer"}), flush=True)
    await reader.readline()  # receiver says stop
    print(json.dumps({"sent_at": vtrack.sent_at}), flush=True)
    await pc.close()


# ----------------------------------------------------------------------------- receiver
async def run_receiver(mode: str, w: int, h: int, seconds: float, codec: str) -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

    from tests.media.loopback import Pattern
    from tests.support import loopback_ice

    pattern = Pattern(w, h)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--sender",
        "--size",
        f"{w}x{h}",
        "--codec",
        codec,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(ROOT),
    )
    assert proc.stdin is not None and proc.stdout is not None
    await proc.stdout.readline()  # sender process is up (imports done): start the clock now
    got: list[tuple[int, float]] = []  # (frame number, monotonic time as numpy)
    internal: list[float] = []  # ours only: frame complete (last packet) -> numpy, ms
    first_numpy: float | None = None
    streams: list[Any] = []
    tasks: list[asyncio.Task[None]] = []

    t_offer = time.monotonic()
    with loopback_ice():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        vt = pc.addTransceiver("video", direction="recvonly")
        at = pc.addTransceiver("audio", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        vt.setCodecPreferences(
            [c for c in caps.codecs if c.mimeType.lower() in (codec.lower(), "video/rtx")]
        )
        if mode == "ours":
            from avatar_rtc.media import AudioStream, AvClock, VideoStream
            from avatar_rtc.rtc.receiver import ReceivePipeline

            clock = AvClock()
            video = ReceivePipeline("video", clock=clock)
            audio = ReceivePipeline("audio", clock=clock)
            video.attach(vt.receiver)
            audio.attach(at.receiver)
        await pc.setLocalDescription(await pc.createOffer())
        proc.stdin.write(
            (json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}) + "\n").encode()
        )
        await proc.stdin.drain()
        answer = json.loads(await proc.stdout.readline())
        await pc.setRemoteDescription(RTCSessionDescription(**answer))

    def on_numpy(arr: Any) -> None:
        nonlocal first_numpy
        now = time.monotonic()
        if first_numpy is None:
            first_numpy = now
        got.append((pattern.read_counter(arr), now))

    if mode == "ours":
        vs = VideoStream(video, format="rgb24")
        aus = (
            None
            if os.environ.get("BENCH_NO_AUDIO")
            else AudioStream(audio, sample_rate=48000, channels=2)
        )
        streams += [vs, aus] if aus else [vs]

        async def consume_video() -> None:
            async for f in vs:
                on_numpy(f.array)
                internal.append(1000 * (time.monotonic() - f.arrival_time))

        async def consume_audio() -> None:
            assert aus is not None
            async for _ in aus:
                pass

    else:

        async def consume_video() -> None:
            track = vt.receiver.track
            while True:
                frame: Any = await track.recv()
                on_numpy(frame.to_ndarray(format="rgb24"))

        async def consume_audio() -> None:
            track = at.receiver.track
            while True:
                chunk: Any = await track.recv()
                chunk.to_ndarray()

    tasks += [asyncio.ensure_future(consume_video())]
    if not os.environ.get("BENCH_NO_AUDIO"):
        tasks.append(asyncio.ensure_future(consume_audio()))
    await asyncio.sleep(2.0)  # warm-up (first keyframe, SR)
    threads_start = _thread_cpu() if os.environ.get("BENCH_THREADS") else {}
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    threads0 = _thread_cpu() if os.environ.get("BENCH_THREADS") else {}
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)

    proc.stdin.write(b"stop\n")
    await proc.stdin.drain()
    sent_at = {int(k): v for k, v in json.loads(await proc.stdout.readline())["sent_at"].items()}
    for t in tasks:
        t.cancel()
    for s in streams:
        s.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    await pc.close()
    await proc.wait()

    lat = [1000 * (t - sent_at[n]) for n, t in got[30:] if n in sent_at and t >= sent_at[n]]
    lat.sort()
    return {
        "mode": mode,
        "latency_ms_median": statistics.median(lat) if lat else None,
        "latency_ms_p90": lat[int(0.9 * (len(lat) - 1))] if lat else None,
        "complete_to_numpy_ms_median": statistics.median(internal[30:]) if internal else None,
        "first_numpy_ms": 1000 * (first_numpy - t_offer) if first_numpy else None,
        "cpu_percent": 100 * cpu,
        "frames": len(got),
        **(
            {
                "threads_cpu_percent": {
                    k: round(100 * (v - threads_start.get(k, 0.0)) / seconds, 1)
                    for k, v in threads0.items()
                }
            }
            if threads0
            else {}
        ),
    }


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per Python thread name (others summed as "other"), from /proc."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            name = names.get(int(tid), "other")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def one_run(mode: str, args: argparse.Namespace, w: int, h: int) -> dict[str, Any]:
    """Each measurement in a fresh process: no warm caches or threads carried over."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            mode,
            "--size",
            f"{w}x{h}",
            "--codec",
            args.codec,
            "--seconds",
            str(args.seconds),
        ],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=args.seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--codec", default="video/H264", choices=["video/H264", "video/VP8"])
    ap.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--one", choices=["ours", "aiortc"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    if args.sender:
        asyncio.run(run_sender(w, h, args.codec))
        return 0
    if args.one:
        if os.environ.get("BENCH_DEBUG"):
            import logging

            logging.basicConfig(level=logging.WARNING)
            logging.getLogger("avatar_rtc").setLevel(logging.DEBUG)
        print(json.dumps(asyncio.run(run_receiver(args.one, w, h, args.seconds, args.codec))))
        return 0

    results: dict[str, list[dict[str, Any]]] = {"ours": [], "aiortc": []}
    for i in range(args.runs):
        for mode in ("ours", "aiortc") if i % 2 == 0 else ("aiortc", "ours"):
            r = one_run(mode, args, w, h)
            results[mode].append(r)
            print(f"run {i + 1} {mode:6s} {r}", file=sys.stderr, flush=True)

    keys = [
        "latency_ms_median",
        "latency_ms_p90",
        "complete_to_numpy_ms_median",
        "first_numpy_ms",
        "cpu_percent",
    ]
    summary: dict[str, Any] = {
        "size": args.size,
        "codec": args.codec,
        "runs": args.runs,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
    }
    for mode, rs in results.items():
        summary[mode] = {}
        for k in keys:
            values = [r[k] for r in rs if r.get(k) is not None]
            summary[mode][k] = statistics.median(values) if values else None
    summary["ratio_ours_over_aiortc"] = {
        k: summary["ours"][k] / summary["aiortc"][k]
        if summary["ours"][k] is not None and summary["aiortc"][k]
        else None
        for k in keys
    }

    def cell(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(f"\n{args.size} {args.codec} 30 fps, {args.runs} runs x {args.seconds:.0f} s, medians")
    print(f"{'figure':28s} {'ours':>10s} {'aiortc':>10s} {'ours/aiortc':>12s}")
    for k in keys:
        print(
            f"{k:28s} {cell(summary['ours'][k]):>10s} {cell(summary['aiortc'][k]):>10s} "
            f"{cell(summary['ratio_ours_over_aiortc'][k], 2):>12s}"
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
