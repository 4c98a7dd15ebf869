#!/usr/bin/env python3
"""Receive-path benchmark: our ReceivePipeline vs. a plain aiortc receiver, on 127.0.0.1.

The sender runs in a **separate process**, so the receiver's process CPU time is the receiver's
alone. Both processes stamp with ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide on
Linux), so "sender hand-off -> numpy" latency is exact across the two processes.

Sources (``--source``):

- ``emulator`` (default): the project's emulator (``avatar_rtc.emulator``, synthetic avatar,
  512x512 at 30 fps, H264, periodic keyframe every 2 s, opus audio). The sender process starts
  ``Emulator`` on 127.0.0.1, creates a fresh session through ``ControlClient`` and prints the
  ``whepUrl``; the receiver POSTs the WHEP offer itself. Hand-off = the emulator's
  ``on_frame_sent`` hook (first RTP packet of the frame handed to the DTLS transport, i.e. to
  the network); the frame is identified by its RTP timestamp. The emulator renders, encodes
  and forces a keyframe when the viewer's track starts (it honours keyframe requests), so
  "offer -> first numpy frame" covers the whole WHEP + ICE + DTLS + first keyframe path.
- ``pattern``: an aiortc sender with the test pattern of tests/media/loopback.py (frame counter
  drawn in the pixels, 30 fps, plus a 48 kHz tone track), signalled over the process pipes;
  hand-off = the moment the sender's track returned frame N to aiortc's encoder; the frame is
  identified by the counter read back from the pixels.

Modes (same sender stream each time):
- ours:   ReceivePipeline + VideoStream(rgb24, latest) + AudioStream
          (emulator source: brought up by MediaConnection, ``on_receiver`` attaches them)
- aiortc: track.recv() + frame.to_ndarray(format="rgb24") (+ audio track.recv())

Figures per run: median/p90 latency, offer -> first numpy frame, receiver CPU (% of one core,
process CPU time / wall over the steady part). Several runs alternate the modes; medians are
reported with ours/aiortc ratios. Prints a table and a JSON line.

    python scripts/bench_receive.py --runs 5 --seconds 8                 # emulator, 512x512
    python scripts/bench_receive.py --source pattern --runs 3 --size 1280x720

Environment: BENCH_NO_AUDIO=1 consumes video only (note: aiortc decodes audio anyway, ours
only when an AudioStream exists); BENCH_THREADS=1 adds CPU per thread (``--one`` runs);
BENCH_DEBUG=1 logs avatar_rtc at DEBUG (``--one`` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
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


async def run_emulator_sender(w: int, h: int, codec: str) -> None:
    """The emulator in its own process: one fresh session, its whepUrl out, sent frames back.

    Protocol on stdout/stdin (JSON lines): -> {"whep_url"} once the session's media is up;
    <- "stop"; -> {"sent_at": {rtp_timestamp: monotonic}, "first_rtp", "stats"};
    <- EOF (the receiver has closed its connection): end the session, stop the emulator.
    """
    from avatar_rtc.api.client import ControlClient
    from avatar_rtc.emulator import Emulator
    from avatar_rtc.emulator.catalog import DEFAULT_VISUAL_ID
    from avatar_rtc.emulator.media import AvatarMedia, AvatarMediaOptions, SentFrame

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    video_codec: Any = codec.split("/")[1]  # "H264" / "VP8"
    options = AvatarMediaOptions(width=w, height=h, fps=30, video_codec=video_codec)
    sent_at: dict[int, float] = {}  # video RTP timestamp as sent -> monotonic hand-off
    first_rtp: list[int] = []

    def on_sent(frame: SentFrame) -> None:
        if frame.kind == "video":
            if not first_rtp:
                first_rtp.append(frame.rtp_timestamp)
            sent_at[frame.rtp_timestamp] = frame.monotonic

    async with (
        Emulator(host="127.0.0.1", media_options=options) as emu,
        ControlClient(emu.api_url, emu.ks) as api,
    ):
        handle = await api.create(DEFAULT_VISUAL_ID)  # a fresh session: one viewer each
        config = await api.init_client(handle)  # starts the session's media
        media = emu.session(handle.session_id).media
        assert isinstance(media, AvatarMedia)
        # on_frame_sent (Timeline hook) rather than sent_frames: that ring keeps 512 frames
        # of audio + video, about 6 s at 30 fps + 50 audio frames/s, less than a run.
        media.on_frame_sent = on_sent
        print(json.dumps({"whep_url": config.whep_url}), flush=True)
        await reader.readline()  # receiver says stop
        st = media.stats
        stats = {
            "video_frames": st.video_frames,
            "keyframes": st.keyframes,
            "keyframe_requests": st.keyframe_requests,
            "skipped": st.video_frames_skipped,
            "encode_ms": round(st.video_ms_per_frame, 2),
        }
        print(
            json.dumps({"sent_at": sent_at, "first_rtp": first_rtp[:1], "stats": stats}),
            flush=True,
        )
        await reader.read()  # EOF: the receiver is gone
        await api.end(handle)


# ----------------------------------------------------------------------------- receiver
async def _spawn_sender(flag: str, w: int, h: int, codec: str) -> asyncio.subprocess.Process:
    """The sender in its own process, so the receiver's CPU time is the receiver's alone."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        flag,
        "--size",
        f"{w}x{h}",
        "--codec",
        codec,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(ROOT),
    )


async def run_receiver(mode: str, w: int, h: int, seconds: float, codec: str) -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

    from tests.media.loopback import Pattern
    from tests.support import loopback_ice

    pattern = Pattern(w, h)
    proc = await _spawn_sender("--sender", w, h, codec)
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
            from avatar_rtc.media import AudioFormat, AudioStream, VideoFormat, VideoStream
            from avatar_rtc.rtc.clock import AvClock
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
        vs = VideoStream(video, VideoFormat("rgb24"))
        aus = (
            None
            if os.environ.get("BENCH_NO_AUDIO")
            else AudioStream(audio, AudioFormat(sample_rate=48000, channels=2))
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
    cpu, threads = await _steady_cpu(seconds)

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
    return _figures(mode, got, sent_at, internal, first_numpy, t_offer, cpu, threads)


async def _steady_cpu(seconds: float) -> tuple[float, dict[str, float]]:
    """After a 2 s warm-up (first keyframe, SR): process CPU / wall over ``seconds``."""
    await asyncio.sleep(2.0)
    threads_start = _thread_cpu() if os.environ.get("BENCH_THREADS") else {}
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    threads0 = _thread_cpu() if os.environ.get("BENCH_THREADS") else {}
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    threads = {
        k: round(100 * (v - threads_start.get(k, 0.0)) / seconds, 1) for k, v in threads0.items()
    }
    return cpu, threads


def _figures(
    mode: str,
    got: list[tuple[int, float]],
    sent_at: dict[int, float],
    internal: list[float],
    first_numpy: float | None,
    t_offer: float,
    cpu: float,
    threads: dict[str, float],
) -> dict[str, Any]:
    """``got``: (frame id, monotonic time as numpy); ``sent_at``: frame id -> hand-off time."""
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
        "unmatched": sum(1 for n, _ in got if n not in sent_at),
        **({"threads_cpu_percent": threads} if threads else {}),
    }


async def run_receiver_emulator(
    mode: str, w: int, h: int, seconds: float, codec: str
) -> dict[str, Any]:
    """One WHEP viewer of a fresh emulator session (emulator in a child process)."""
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
    from yarl import URL

    from tests.support import loopback_ice

    proc = await _spawn_sender("--emulator-sender", w, h, codec)
    assert proc.stdin is not None and proc.stdout is not None
    # The emulator is up and the session's media started (init-client): start the clock now.
    whep_url = json.loads(await proc.stdout.readline())["whep_url"]
    got: list[tuple[int, float]] = []  # (RTP timestamp as sent, monotonic time as numpy)
    internal: list[float] = []  # ours only: frame complete (last packet) -> numpy, ms
    first_numpy: float | None = None
    streams: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    origin: list[int] = []  # aiortc only: RTP timestamp its decoded pts are relative to
    no_audio = bool(os.environ.get("BENCH_NO_AUDIO"))

    def on_numpy(rtp_timestamp: int) -> None:
        nonlocal first_numpy
        now = time.monotonic()
        if first_numpy is None:
            first_numpy = now
        got.append((rtp_timestamp & 0xFFFFFFFF, now))

    if mode == "ours":
        from avatar_rtc.media import AudioFormat, AudioStream, VideoFormat, VideoStream
        from avatar_rtc.rtc.clock import AvClock
        from avatar_rtc.rtc.connection import MediaConnection
        from avatar_rtc.rtc.ice_options import IceOptions
        from avatar_rtc.rtc.receiver import ReceivePipeline

        clock = AvClock()
        pipelines = {
            "video": ReceivePipeline("video", clock=clock),
            "audio": ReceivePipeline("audio", clock=clock),
        }
        # Streams and consumers exist before the offer, as in the aiortc mode.
        vs = VideoStream(pipelines["video"], VideoFormat("rgb24"))
        stereo = AudioFormat(sample_rate=48000, channels=2)
        aus = None if no_audio else AudioStream(pipelines["audio"], stereo)
        streams += [vs, aus] if aus else [vs]

        async def consume_video() -> None:
            async for f in vs:
                assert f.array is not None
                # VideoFrame.rtp_timestamp is the sender's, unwrapped: on_numpy masks to 32 bits
                on_numpy(f.rtp_timestamp)
                internal.append(1000 * (time.monotonic() - f.arrival_time))

        async def consume_audio() -> None:
            assert aus is not None
            async for _ in aus:
                pass

        tasks.append(asyncio.ensure_future(consume_video()))
        if aus is not None:
            tasks.append(asyncio.ensure_future(consume_audio()))
        connection = MediaConnection(
            whep_url,
            ice=IceOptions(host_addresses=("127.0.0.1",)),
            video_codecs=(codec.split("/")[1],),
            on_receiver=lambda receiver, kind: pipelines[kind].attach(receiver),
        )
        t_offer = time.monotonic()
        await connection.connect()
        close: Callable[[], Awaitable[None]] = connection.close
        answered, connected = connection.timings.answer_received, connection.timings.dtls_connected
    else:
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
            origin = _rtp_origin(vt.receiver)
            up = asyncio.Event()

            @pc.on("connectionstatechange")
            def on_state() -> None:
                if pc.connectionState == "connected":
                    up.set()

            async def consume_video() -> None:
                track = vt.receiver.track
                while True:
                    frame: Any = await track.recv()
                    frame.to_ndarray(format="rgb24")
                    on_numpy(frame.pts + origin[0])

            async def consume_audio() -> None:
                track = at.receiver.track
                while True:
                    chunk: Any = await track.recv()
                    chunk.to_ndarray()

            await pc.setLocalDescription(await pc.createOffer())
        http = aiohttp.ClientSession()
        async with http.post(
            whep_url,
            data=pc.localDescription.sdp.encode(),
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"WHEP POST: {resp.status} {await resp.text()}")
            answer = await resp.text()
            location = resp.headers["Location"]
        answered = time.monotonic()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(up.wait(), 20)  # like MediaConnection.connect()
        connected = time.monotonic()
        # aiortc creates the remote tracks in setRemoteDescription (before any RTP arrives;
        # decoded frames queue on the track until recv()).
        tasks.append(asyncio.ensure_future(consume_video()))
        if not no_audio:
            tasks.append(asyncio.ensure_future(consume_audio()))

        async def close() -> None:
            # Location is relative (/v1/whep/{session}/{resource}): resolve on the whepUrl.
            with contextlib.suppress(aiohttp.ClientError):
                async with http.delete(URL(whep_url).join(URL(location))):
                    pass
            await http.close()
            await pc.close()

    cpu, threads = await _steady_cpu(seconds)

    proc.stdin.write(b"stop\n")
    await proc.stdin.drain()
    reply = json.loads(await proc.stdout.readline())
    sent_at = {int(k): v for k, v in reply["sent_at"].items()}
    for t in tasks:
        t.cancel()
    for s in streams:
        s.close()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            print(f"consumer failed: {outcome!r}", file=sys.stderr)
    await close()
    proc.stdin.close()
    await proc.wait()
    result = _figures(mode, got, sent_at, internal, first_numpy, t_offer, cpu, threads)
    result["sender"] = reply["stats"]
    # where "offer -> first numpy" goes: WHEP answer, ICE+DTLS up, first frame handed off
    first_sent = sent_at.get(reply["first_rtp"][0]) if reply["first_rtp"] else None
    result["answer_ms"] = 1000 * ((answered or t_offer) - t_offer)
    result["connected_ms"] = 1000 * ((connected or t_offer) - t_offer)
    result["first_sent_ms"] = 1000 * (first_sent - t_offer) if first_sent else None
    # the receiver's own share: the emulator handed off the first (key)frame -> numpy
    result["first_sent_to_numpy_ms"] = (
        1000 * (first_numpy - first_sent) if first_sent and first_numpy else None
    )
    if origin:  # cross-check: the mapper's origin is the first frame the emulator sent
        result["origin_is_first_sent"] = origin[:1] == reply["first_rtp"]
    return result


def _rtp_origin(receiver: Any) -> list[int]:
    """The RTP timestamp aiortc's decoded video pts are relative to (filled on the 1st frame).

    aiortc's RTCRtpReceiver passes each complete encoded frame's RTP timestamp through a
    TimestampMapper (pts = timestamp - first timestamp, wrap-aware) before decoding; the
    decoder keeps that pts. Recording the mapper's first input makes
    ``(pts + origin) mod 2**32`` exactly the RTP timestamp the emulator sent: no guess from
    the first frame's arrival, and it stays right if the first sent frame never completes.
    """
    mapper = receiver._RTCRtpReceiver__timestamp_mapper
    origin: list[int] = []
    original = mapper.map

    def record(timestamp: int) -> int:
        if not origin:
            origin.append(timestamp)
        return int(original(timestamp))

    mapper.map = record
    return origin


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
            "--source",
            args.source,
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
    ap.add_argument(
        "--source",
        default="emulator",
        choices=["emulator", "pattern"],
        help="sender: the project's emulator over WHEP, or the aiortc test pattern",
    )
    ap.add_argument("--size", help="WxH (default: 512x512 emulator, 1280x720 pattern)")
    ap.add_argument("--codec", default="video/H264", choices=["video/H264", "video/VP8"])
    ap.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--emulator-sender", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--one", choices=["ours", "aiortc"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.size is None:
        args.size = "512x512" if args.source == "emulator" else "1280x720"
    w, h = (int(x) for x in args.size.split("x"))
    if args.sender:
        asyncio.run(run_sender(w, h, args.codec))
        return 0
    if args.emulator_sender:
        asyncio.run(run_emulator_sender(w, h, args.codec))
        return 0
    if args.one:
        if os.environ.get("BENCH_DEBUG"):
            import logging

            logging.basicConfig(level=logging.WARNING)
            logging.getLogger("avatar_rtc").setLevel(logging.DEBUG)
        run = run_receiver_emulator if args.source == "emulator" else run_receiver
        print(json.dumps(asyncio.run(run(args.one, w, h, args.seconds, args.codec))))
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
    if args.source == "emulator":  # offer -> first numpy, step by step
        keys[4:4] = ["answer_ms", "connected_ms", "first_sent_ms", "first_sent_to_numpy_ms"]
    summary: dict[str, Any] = {
        "source": args.source,
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
        # frames whose id matched no sent frame (should be 0: identification sanity check)
        summary[mode]["unmatched_total"] = sum(r.get("unmatched", 0) for r in rs)
    summary["ratio_ours_over_aiortc"] = {
        k: summary["ours"][k] / summary["aiortc"][k]
        if summary["ours"][k] is not None and summary["aiortc"][k]
        else None
        for k in keys
    }

    def cell(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(
        f"\n{args.source} {args.size} {args.codec} 30 fps, "
        f"{args.runs} runs x {args.seconds:.0f} s, medians"
    )
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
