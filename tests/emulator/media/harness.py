"""A WHEP endpoint around AvatarMedia objects, and a plain aiortc recvonly viewer for tests."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiohttp import web
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from avatar_rtc.emulator.media import AvatarMedia, mouth_opening
from avatar_rtc.emulator.whep import add_whep_routes
from tests.support import loopback_ice, wait_until


@dataclass
class WhepServer:
    base_url: str
    medias: dict[str, AvatarMedia]

    def url(self, session_id: str) -> str:
        return f"{self.base_url}/v1/whep/{session_id}"


@contextlib.asynccontextmanager
async def whep_server(medias: dict[str, AvatarMedia]) -> AsyncIterator[WhepServer]:
    """Serve ``medias`` (session id -> media) over WHEP on 127.0.0.1, loopback ICE only."""
    app = web.Application()
    add_whep_routes(app, medias.get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        with loopback_ice():
            yield WhepServer(f"http://{host}:{port}", medias)
    finally:
        for media in medias.values():
            await media.close()
        await runner.cleanup()


@dataclass
class VideoSample:
    at: float
    pts: int
    width: int
    height: int
    opening: float
    key_frame: bool


@dataclass
class AudioSample:
    at: float
    sample_rate: int
    channels: int
    rms_db: float
    pts: int = 0  # the RTP timestamp, as for video


@dataclass
class Viewer:
    pc: RTCPeerConnection
    status: int
    location: str | None
    answer: str
    content_type: str
    video: list[VideoSample] = field(default_factory=list)
    audio: list[AudioSample] = field(default_factory=list)
    last_rgb: np.ndarray | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def wait_video(self, n: int, within: float = 10.0) -> None:
        await wait_until(lambda: len(self.video) >= n, within)

    async def wait_audio(self, n: int, within: float = 10.0) -> None:
        await wait_until(lambda: len(self.audio) >= n, within)

    def video_since(self, t: float) -> list[VideoSample]:
        return [s for s in self.video if s.at >= t]

    def audio_since(self, t: float) -> list[AudioSample]:
        return [s for s in self.audio if s.at >= t]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def _read_video(track: MediaStreamTrack, viewer: Viewer) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.VideoFrame)
            rgb = frame.to_ndarray(format="rgb24")
            viewer.last_rgb = rgb
            viewer.video.append(
                VideoSample(
                    time.monotonic(),
                    int(frame.pts or 0),
                    frame.width,
                    frame.height,
                    mouth_opening(rgb),
                    bool(frame.key_frame),
                )
            )


async def _read_audio(track: MediaStreamTrack, viewer: Viewer) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            pcm = frame.to_ndarray().astype(np.float64) / 32768.0
            rms = math.sqrt(float(np.mean(pcm**2))) if pcm.size else 0.0
            viewer.audio.append(
                AudioSample(
                    time.monotonic(),
                    frame.sample_rate,
                    len(frame.layout.channels),
                    20 * math.log10(rms) if rms > 1e-6 else -120.0,
                    int(frame.pts or 0),
                )
            )


async def connect_viewer(url: str, *, content_type: str = "application/sdp") -> Viewer:
    """POST a recvonly video+audio offer; on 201, start reading decoded frames."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    video_tr = pc.addTransceiver("video", direction="recvonly")
    audio_tr = pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url, data=pc.localDescription.sdp, headers={"Content-Type": content_type}
        ) as resp,
    ):
        body = await resp.text()
        viewer = Viewer(
            pc,
            resp.status,
            resp.headers.get("Location"),
            body,
            resp.headers.get("Content-Type", ""),
        )
    if viewer.status != 201:
        await pc.close()
        return viewer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    viewer.tasks = [
        asyncio.create_task(_read_video(video_tr.receiver.track, viewer)),
        asyncio.create_task(_read_audio(audio_tr.receiver.track, viewer)),
    ]
    return viewer


async def delete(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.delete(url) as resp:
        return resp.status
