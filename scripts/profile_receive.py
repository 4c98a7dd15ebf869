#!/usr/bin/env python3
"""Where the receiver's event loop spends its time, per received RTP packet.

N sessions (default 4) from the emulator's fan-out load generator (the same one as
``bench_scale.py``: 512x512 25 fps H264 + Opus, in a process of its own) are received in ONE
process, so all of them share one event loop, in one of these modes:

- ``decode``: ours, ``AvatarSession`` + ``VideoStream(rgb24)`` + ``AudioStream`` (numpy);
- ``copy-record``: ours, ``session.record(..., RecordOptions(mode="copy"))``
  (both with the fleet runner's options, as ``bench_scale.py`` measures them: no speech
  detection, video decoded on the event loop);
- ``aiortc``: plain aiortc (``bench_scale``'s receiver: ``track.recv()`` + ``to_ndarray``).

After a warm-up the receiver's CPU is measured for ``--seconds`` with nothing attached: the
process CPU per session (``/proc/self/stat``, all threads) and per thread. Then
``py-spy record --format raw --threads`` samples it for another ``--seconds`` (idle stacks
excluded: a sample is time the thread ran Python). Only the stacks of the event-loop thread
(the main thread: ``asyncio.run``) are kept. Packets are the RTP packets the receivers handled
in the same window. Printed: the CPU figures of the first window, µs of event-loop time per
packet in all, and the top functions by inclusive and by self time (samples x interval /
packets). ``--json`` adds a JSON line.

The CPU is not taken while py-spy samples: it stops every thread of the process at each
sample (``--rate`` a second), and each stop is two context switches a thread (on the
reference machine ~415 a second for each of 25 threads of ``copy-record x8``, most of them
idle), so the process spends more (printed too, as "while sampled").

    pip install py-spy  # not among the dev extras: only this script uses it
    python scripts/profile_receive.py --modes decode,copy-record,aiortc --sessions 4
    python scripts/profile_receive.py --modes copy-record --turn   # through a coturn (root)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

MODES = ("decode", "copy-record", "aiortc")
WARMUP = 4.0
LOOP_THREAD = "MainThread"  # asyncio.run() runs the loop there
# py-spy does not see a thread blocked in epoll_wait (or waiting for the GIL after it) as idle
SELECT_FRAME = "EpollSelector.select (selectors.py)"


# ------------------------------------------------------------------------------ receiver
def _cpu_seconds() -> float:
    """This process's CPU seconds, all threads (as the fleet's admission reads its workers)."""
    from avatar_rtc.fleet.process_cpu import cpu_seconds

    seconds = cpu_seconds(os.getpid())
    assert seconds is not None  # (its own /proc entry)
    return seconds


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    found: dict[str, float] = collections.defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        name = names.get(int(tid), "other (native)").rstrip("0123456789_-")
        found[name] += (int(fields[11]) + int(fields[12])) / tick
    return found


def _batch_counts() -> dict[str, int]:
    """Wake-ups and datagrams of the SRTP fast path (when the tree has one)."""
    try:
        from avatar_rtc.rtc import datagram_batch
    except ImportError:
        return {}
    batches = list(getattr(datagram_batch, "_BATCHES", {}).values())
    return {
        "wakeups": sum(b.wakeups for b in batches),
        "datagrams": sum(b.datagrams for b in batches),
    }


class _Counter:
    """RTP packets handled by the receivers of this process."""

    def __init__(self) -> None:
        self.sessions: list[Any] = []
        self.aiortc_packets = 0

    def packets(self) -> int:
        total = self.aiortc_packets
        for session in self.sessions:
            stats = session.stats()
            total += stats.video.packets + stats.audio.packets
        return total


async def _ours(
    mode: str, gen: dict[str, Any], counter: _Counter, stop: asyncio.Event, read_interval: float
) -> None:
    from bench_scale import _options

    from avatar_rtc.media.formats import AudioFormat, VideoFormat
    from avatar_rtc.record.options import RecordOptions
    from avatar_rtc.session import AvatarSession

    # As the fleet's runner (bench_scale's receivers) runs a job without speech.
    options = replace(
        _options(gen["api_url"], gen["ks"], gen.get("turn"), read_interval),
        detect_speech=False,
        decode_video_on_loop=True,
    )
    session = AvatarSession(options)
    await session.start()
    out = Path(tempfile.mkdtemp(prefix="profile-receive-"))
    tasks: list[asyncio.Task[None]] = []
    recorder = None
    try:
        if mode == "copy-record":
            recorder = session.record(out / "session.mp4", RecordOptions(mode="copy"))
        else:
            video = session.video(VideoFormat(pixel_format="rgb24"), policy="all")
            audio = session.audio(AudioFormat())

            async def consume_video() -> None:
                async for frame in video:
                    frame.to_ndarray()

            async def consume_audio() -> None:
                async for chunk in audio:
                    chunk.array  # noqa: B018

            tasks = [asyncio.create_task(consume_video()), asyncio.create_task(consume_audio())]
        await session.wait_first_frame(30)
        counter.sessions.append(session)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if recorder is not None:
            await recorder.astop()
        await session.close()
        shutil.rmtree(out, ignore_errors=True)


def _count_aiortc_packets(counter: _Counter) -> None:
    """Count the packets aiortc's receivers handle (class-level wrap: aiortc mode only)."""
    from aiortc import RTCRtpReceiver

    original = RTCRtpReceiver._handle_rtp_packet

    async def counting(self: Any, packet: Any, arrival_time_ms: int) -> None:
        counter.aiortc_packets += 1
        await original(self, packet, arrival_time_ms)

    RTCRtpReceiver._handle_rtp_packet = counting  # type: ignore[method-assign]


async def _window(counter: _Counter, seconds: float) -> dict[str, Any]:
    """The receivers' figures over the next ``seconds``."""
    packets0, cpu0, wall0 = counter.packets(), _cpu_seconds(), time.monotonic()
    threads0, batches0 = _thread_cpu(), _batch_counts()
    await asyncio.sleep(seconds)
    packets, cpu = counter.packets() - packets0, _cpu_seconds() - cpu0
    wall = time.monotonic() - wall0
    threads, batches = _thread_cpu(), _batch_counts()
    return {
        "batches": {name: n - batches0.get(name, 0) for name, n in batches.items()},
        "threads": {name: t - threads0.get(name, 0.0) for name, t in threads.items()},
        "packets": packets,
        "cpu": cpu,
        "wall": wall,
        "packet_rate": packets / wall,
    }


async def run_receiver(
    mode: str, n: int, gen: dict[str, Any], seconds: float, read_interval: float = 0.0
) -> None:
    """N sessions on this loop; after warm-up a window's figures (JSON), then "ready" and
    the figures of a second window (the profiled one), with the sessions' errors."""
    counter = _Counter()
    stop = asyncio.Event()
    if mode == "aiortc":
        from bench_scale import _aiortc_session

        _count_aiortc_packets(counter)
        # Up to the end of both windows, and a little more.
        lasts = WARMUP + 1.0 + 2 * seconds + 2.0
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(_aiortc_session(gen, lasts)) for _ in range(n)
        ]
        await asyncio.sleep(WARMUP + 1.0)
    else:
        tasks = [
            asyncio.create_task(_ours(mode, gen, counter, stop, read_interval)) for _ in range(n)
        ]
        while len(counter.sessions) < n and not any(t.done() for t in tasks):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP)
    print(json.dumps(await _window(counter, seconds)), flush=True)
    print(json.dumps({"ready": True}), flush=True)
    profiled = await _window(counter, seconds)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    profiled["errors"] = [repr(r) for r in results if isinstance(r, BaseException)]
    print(json.dumps(profiled), flush=True)


# --------------------------------------------------------------------------- the profile
def parse_raw(path: Path, thread: str | None = LOOP_THREAD) -> list[tuple[list[str], int]]:
    """py-spy raw output -> (frames root first, samples) of ``thread`` (None: all threads)."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and (thread is None or frames[0].endswith(thread)):
            stacks.append((frames, int(count)))
    return stacks


def top_costs(
    stacks: list[tuple[list[str], int]], per_sample_us: float, top: int
) -> dict[str, Any]:
    """Self and inclusive µs per packet of every function (inclusive counted once a stack)."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for frames, count in stacks:
        if len(frames) < 2:  # the thread alone, no Python frame: not time it ran Python
            continue
        total += count
        if frames[-1] == SELECT_FRAME:
            waiting += count
        for frame in set(frames[1:]):  # frames[0] is the thread
            inclusive[frame] += count
        self_[frames[-1]] += count
    return {
        "total_us": total * per_sample_us,
        "select_us": waiting * per_sample_us,
        "inclusive": [(f, c * per_sample_us) for f, c in inclusive.most_common(top)],
        "self": [(f, c * per_sample_us) for f, c in self_.most_common(top)],
    }


def profile_mode(
    mode: str,
    n: int,
    seconds: float,
    rate: int,
    top: int,
    out_dir: Path,
    gil: bool = False,
    turn: dict[str, str] | None = None,
    read_interval: float = 0.0,
) -> dict[str, Any]:
    from bench_scale import load_generator, spawn_receiver

    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"profile-{mode}-{n}.raw"
    with load_generator() as gen:
        if turn is not None:
            gen["turn"] = turn
        extra = ("--read-interval", str(read_interval))
        receiver = spawn_receiver(__file__, mode, n, seconds, gen, *extra)
        assert receiver.stdout is not None
        clean = json.loads(receiver.stdout.readline())
        json.loads(receiver.stdout.readline())  # ready: the profiled window starts
        spy = subprocess.run(
            [
                "py-spy",
                "record",
                "--pid",
                str(receiver.pid),
                "--format",
                "raw",
                "--threads",
                "--nolineno",
                "--rate",
                str(rate),
                "--duration",
                str(int(seconds)),
                "--output",
                str(raw),
                *(["--gil"] if gil else []),
            ],
            capture_output=True,
            text=True,
        )
        profiled = json.loads(receiver.stdout.readline())
        receiver.wait(timeout=60)
    if spy.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed: {spy.stderr[-500:]}")
    packets_in_spy = profiled["packet_rate"] * int(seconds)
    costs = top_costs(parse_raw(raw), 1e6 / rate / packets_in_spy, top)
    return summarise(mode, n, clean, profiled, costs)


def summarise(
    mode: str, n: int, clean: dict[str, Any], profiled: dict[str, Any], costs: dict[str, Any]
) -> dict[str, Any]:
    """One mode's figures: CPU from the window nothing sampled (``clean``), the event-loop
    costs from py-spy's (``profiled``), and the CPU of that window apart."""
    return {
        "mode": mode,
        "n": n,
        "packets_per_s": clean["packet_rate"],
        "cpu_per_session_pct": _per_session_pct(clean["cpu"], clean, n),
        "cpu_us_per_packet": 1e6 * clean["cpu"] / clean["packets"] if clean["packets"] else None,
        "sampled_cpu_per_session_pct": _per_session_pct(profiled["cpu"], profiled, n),
        "loop_us_per_packet": costs["total_us"] - costs["select_us"],
        "select_us_per_packet": costs["select_us"],
        "errors": profiled["errors"],
        "batches": clean["batches"],
        "thread_cpu_per_session_pct": {
            name: round(_per_session_pct(t, clean, n), 2)
            for name, t in sorted(clean["threads"].items(), key=lambda kv: -kv[1])
            if t > 0
        },
        "top_inclusive": costs["inclusive"],
        "top_self": costs["self"],
    }


def _per_session_pct(cpu: float, window: dict[str, Any], n: int) -> float:
    return float(100 * cpu / window["wall"] / n)


def print_profile(p: dict[str, Any]) -> None:
    print(
        f"\n== {p['mode']} x{p['n']}: {p['packets_per_s']:.0f} packets/s, "
        f"process CPU {p['cpu_per_session_pct']:.1f} % of a core per session "
        f"({p['cpu_us_per_packet']:.0f} µs/packet, all threads; "
        f"{p['sampled_cpu_per_session_pct']:.1f} % while sampled); "
        f"event-loop thread {p['loop_us_per_packet']:.0f} µs/packet busy "
        f"(+{p['select_us_per_packet']:.0f} in select: idle or waiting for the GIL)"
    )
    print(f"   CPU per session by thread (% of a core): {p['thread_cpu_per_session_pct']}")
    if p["batches"]:
        print(f"   fast path: {p['batches']}")
    if p["errors"]:
        print(f"   session errors: {p['errors']}")
    for title, rows in (("inclusive", p["top_inclusive"]), ("self", p["top_self"])):
        print(f"   top {title} (µs per packet, event-loop thread)")
        for frame, us in rows:
            print(f"   {us:8.1f}  {frame}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    ap.add_argument("--seconds", type=float, default=10.0, help="profiled seconds")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default=tempfile.gettempdir(), help="where the raw profiles go")
    ap.add_argument("--json", action="store_true", help="print a JSON line too")
    ap.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL (Python CPU, no waits)"
    )
    ap.add_argument("--turn", action="store_true", help="relay-only through a coturn (root)")
    ap.add_argument(
        "--read-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="our sessions' SessionOptions.read_interval (default 0: at each packet)",
    )
    ap.add_argument("--receiver", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        gen = json.loads(sys.stdin.readline())  # from bench_scale.spawn_receiver
        asyncio.run(run_receiver(args.receiver, args.n, gen, args.seconds, args.read_interval))
        return 0
    if shutil.which("py-spy") is None:
        print("profile_receive: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    from bench_scale import turn_server

    profiles = []
    with turn_server(args.turn) as turn:
        for mode in [m for m in args.modes.split(",") if m]:
            profile = profile_mode(
                mode,
                args.sessions,
                args.seconds,
                args.rate,
                args.top,
                Path(args.out),
                args.gil,
                None if turn is None else turn[0],
                args.read_interval,
            )
            profiles.append(profile)
            print_profile(profile)
    if args.json:
        print(json.dumps(profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
