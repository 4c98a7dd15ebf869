"""Receive from a WHEP sender, decode, and print one JSON summary line on stdout.

Runs as its own process so it can join a sender's private network namespace (``nsenter``):

    python -m tests.interop.peers.receive_check URL --codec H264 [--client auto|aiortc|avatar_rtc]

The summary has ``ok``, ``client``, ``codec``, ``ttff_s`` (connect start -> first decoded video
frame), ``first_frame_after_connect_s``, per-kind frame counts/sizes/levels and, when the client
exposes them, phase ``timings`` and receive ``stats``. ``--repeat N`` runs N sessions one after
the other and prints one line each. Exit status 0 when the JSON was printed (even with
``ok: false``), 2 on usage errors.

Two clients behind one interface (``Receiver``): plain aiortc (proves the harness on its own)
and the project's ``avatar_rtc.rtc.connection.MediaConnection`` when it is importable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiohttp
import numpy as np
from yarl import URL


@dataclass
class VideoStats:
    frames: int = 0
    width: int = 0
    height: int = 0
    first_s: float | None = None  # seconds from connect start
    max_std: float = 0.0  # spread of decoded pixel values: 0 means a flat picture
    distinct_pixels: bool = False
    # Mean RGB around PROBE_AT (relative x, y) of the last sampled frame: the Chromium page
    # draws a red square there, so colour conversion errors (e.g. swapped R/B) show up.
    probe_rgb: list[float] = field(default_factory=list)


@dataclass
class AudioStats:
    frames: int = 0
    sample_rate: int = 0
    channels: int = 0
    first_s: float | None = None
    max_rms: float = 0.0  # int16 scale


@dataclass
class Summary:
    ok: bool = False
    client: str = ""
    codec: str = ""
    url: str = ""
    ttff_s: float | None = None
    connect_s: float | None = None
    first_frame_after_connect_s: float | None = None
    video: VideoStats = field(default_factory=VideoStats)
    audio: AudioStats = field(default_factory=AudioStats)
    timings: dict[str, float] = field(default_factory=dict)
    negotiated: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Receiver(Protocol):
    """What the check needs from a client: connect, tracks, close."""

    name: str

    async def connect(self) -> None: ...
    async def video_frame(self) -> Any: ...  # av.VideoFrame or avatar_rtc.media VideoFrame
    async def audio_frame(self) -> Any: ...  # av.AudioFrame or avatar_rtc.media AudioFrame
    def timings(self) -> dict[str, float]: ...
    def negotiated(self) -> dict[str, str]: ...
    def stats(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


def _pin_loopback() -> None:
    # aioice leaves 127.0.0.1 out of host candidates; the plain client has no option for it.
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class AiortcReceiver:
    """Plain aiortc 1.16 WHEP receiver: recvonly video + audio, one codec offered for video."""

    name = "aiortc"

    def __init__(self, url: str, codec: str) -> None:
        self.url = url
        self.codec = codec
        self._pc: Any = None
        self._location: str | None = None
        self._tracks: dict[str, Any] = {}
        self._got_tracks: dict[str, asyncio.Event] = {
            "video": asyncio.Event(),
            "audio": asyncio.Event(),
        }
        self._timings: dict[str, float] = {}
        self._answer = ""

    async def connect(self) -> None:
        from aiortc import (
            RTCBundlePolicy,
            RTCConfiguration,
            RTCPeerConnection,
            RTCRtpReceiver,
            RTCSessionDescription,
        )

        _pin_loopback()
        t0 = time.perf_counter()
        # iceServers=[]: None would make aiortc add a public STUN server (no internet here).
        self._pc = pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._tracks[track.kind] = track
            self._got_tracks[track.kind].set()

        video = pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video")
        codecs = caps.codecs if caps is not None else []
        wanted = self.codec.lower()
        prefs = [c for c in codecs if c.mimeType.lower() == f"video/{wanted}"]
        # Keep RTX so NACK retransmissions still work with the narrowed codec list.
        prefs += [c for c in codecs if c.mimeType.lower() == "video/rtx"]
        video.setCodecPreferences(prefs)
        pc.addTransceiver("audio", direction="recvonly")

        await pc.setLocalDescription(await pc.createOffer())  # waits for gathering
        self._timings["gather_s"] = time.perf_counter() - t0
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            resp = await http.post(
                self.url,
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            )
            body = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHEP POST: HTTP {resp.status}: {body[:300]}")
            location = resp.headers.get("Location")
            self._location = str(resp.url.join(URL(location))) if location else None
        self._timings["whep_s"] = time.perf_counter() - t0
        self._answer = body
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("connected", "failed", "closed"):
                connected.set()

        if pc.connectionState != "connected":
            await connected.wait()
        if pc.connectionState != "connected":
            raise RuntimeError(f"peer connection {pc.connectionState}")
        self._timings["connected_s"] = time.perf_counter() - t0

    async def video_frame(self) -> Any:
        await self._got_tracks["video"].wait()
        return await self._tracks["video"].recv()

    async def audio_frame(self) -> Any:
        await self._got_tracks["audio"].wait()
        return await self._tracks["audio"].recv()

    def timings(self) -> dict[str, float]:
        return dict(self._timings)

    def negotiated(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for line in self._answer.splitlines():
            if line.startswith("a=rtpmap:") and "rtx" not in line.lower():
                enc = line.split(" ", 1)[1].split("/")[0]
                kind = "audio" if enc.lower() in ("opus", "pcmu", "pcma", "g722") else "video"
                names.setdefault(kind, enc)
        return names

    def stats(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        if self._location:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                    await http.delete(self._location)
        if self._pc is not None:
            await self._pc.close()


def make_project_receiver(url: str, codec: str) -> Receiver:
    """The project's MediaConnection (see project_client.py); ImportError until it lands."""
    from tests.interop.peers.project_client import ProjectReceiver

    return ProjectReceiver.create(url, codec)


def make_receiver(client: str, url: str, codec: str) -> Receiver:
    if client == "avatar_rtc":
        return make_project_receiver(url, codec)  # an ImportError is reported, not hidden
    if client == "auto":
        with contextlib.suppress(ImportError):
            return make_project_receiver(url, codec)
    return AiortcReceiver(url, codec)


PROBE_AT = (100 / 640, 100 / 480)  # centre of the page's red square, relative to the frame


def _video_level(frame: Any) -> tuple[float, bool, list[float]]:
    # Both av.VideoFrame and avatar_rtc's VideoFrame have to_ndarray(format=...).
    rgb = frame.to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    x, y = int(PROBE_AT[0] * w), int(PROBE_AT[1] * h)
    patch = rgb[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4].reshape(-1, 3)
    probe = [round(float(v), 1) for v in patch.mean(axis=0)]
    return float(rgb.std()), bool((rgb != rgb.flat[0]).any()), probe


def _audio_info(frame: Any) -> tuple[int, int, float]:
    """(sample rate, channels, RMS on the int16 scale) of an av or avatar_rtc audio frame."""
    if isinstance(getattr(frame, "data", None), np.ndarray):  # avatar_rtc.media AudioFrame
        samples, channels = frame.data.astype(np.float64), frame.channels
        is_float = frame.data.dtype.kind == "f"
    else:  # av.AudioFrame
        samples, channels = frame.to_ndarray().astype(np.float64), len(frame.layout.channels)
        is_float = frame.format.name not in ("s16", "s16p")
    if is_float:
        samples *= 32767.0  # float formats are in [-1, 1]
    rms = math.sqrt(float(np.mean(samples**2))) if samples.size else 0.0
    return int(frame.sample_rate), int(channels), rms


async def _count(
    n: int, get: Callable[[], Awaitable[Any]], on_frame: Callable[[Any], None]
) -> None:
    for _ in range(n):
        on_frame(await get())


async def run_check(
    receiver: Receiver, summary: Summary, video_frames: int, audio_frames: int, limit_s: float
) -> None:
    t0 = time.perf_counter()
    video, audio = summary.video, summary.audio

    def on_video(frame: Any) -> None:
        if video.first_s is None:
            video.first_s = time.perf_counter() - t0
        video.frames += 1
        video.width, video.height = frame.width, frame.height
        # Converting every frame costs CPU on a loaded machine; sample a few.
        if video.frames <= 3 or video.frames % 10 == 0:
            std, distinct, video.probe_rgb = _video_level(frame)
            video.max_std = max(video.max_std, std)
            video.distinct_pixels = video.distinct_pixels or distinct

    def on_audio(frame: Any) -> None:
        if audio.first_s is None:
            audio.first_s = time.perf_counter() - t0
        audio.frames += 1
        audio.sample_rate, audio.channels, rms = _audio_info(frame)
        audio.max_rms = max(audio.max_rms, rms)

    async def body() -> None:
        await receiver.connect()
        summary.connect_s = time.perf_counter() - t0
        await asyncio.gather(
            _count(video_frames, receiver.video_frame, on_video),
            _count(audio_frames, receiver.audio_frame, on_audio),
        )

    try:
        await asyncio.wait_for(body(), limit_s)
    except TimeoutError:
        summary.error = f"timeout after {limit_s:.0f} s"
    except Exception as exc:  # the summary must report any client failure
        summary.error = f"{type(exc).__name__}: {exc}"
    finally:
        summary.ttff_s = video.first_s
        if video.first_s is not None and summary.connect_s is not None:
            summary.first_frame_after_connect_s = video.first_s - summary.connect_s
        summary.timings = receiver.timings()
        summary.negotiated = receiver.negotiated()
        with contextlib.suppress(Exception):  # diagnostics only
            summary.stats = receiver.stats()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(receiver.close(), 10)
    summary.ok = (
        summary.error is None and video.frames >= video_frames and audio.frames >= audio_frames
    )


async def check_once(args: argparse.Namespace) -> Summary:
    summary = Summary(codec=args.codec, url=args.url)
    try:
        receiver = make_receiver(args.client, args.url, args.codec)
    except Exception as exc:
        summary.error = f"{type(exc).__name__}: {exc}"
        return summary
    summary.client = receiver.name
    await run_check(receiver, summary, args.video_frames, args.audio_frames, args.timeout)
    return summary


async def amain(args: argparse.Namespace) -> None:
    # --repeat: sequential sessions in one process (the first one pays the cold-start costs).
    for _ in range(args.repeat):
        summary = await check_once(args)
        print(json.dumps(asdict(summary)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="WHEP receive check (prints a JSON summary)")
    parser.add_argument("url")
    parser.add_argument("--codec", choices=["H264", "VP8"], default="H264")
    parser.add_argument("--client", choices=["auto", "aiortc", "avatar_rtc"], default="auto")
    parser.add_argument("--video-frames", type=int, default=30)
    parser.add_argument("--audio-frames", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=1, help="sessions, one JSON line each")
    args = parser.parse_args()
    asyncio.run(amain(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
