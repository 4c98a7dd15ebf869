"""In-process aiortc sender -> our ReceivePipeline, on 127.0.0.1 (test + benchmark helper).

The sender draws a known picture: grey background, red/green/blue/white corner squares, the
frame counter as 12 black/white blocks in the middle row, and a white "flash" bar on every
``flash_every``-th frame. Its audio is silence with a 1 kHz beep starting at the same media
time as each flash. Both tracks share one start time, so media time n/30 s of video and sample
n*1600 of audio are handed to the encoders at the same wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack

from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc.aiortc_seam import SendRtp
from avatar_rtc.rtc.clock import AvClock
from avatar_rtc.rtc.receiver import ReceivePipeline
from tests.support import loopback_ice

W, H = 320, 240
FPS = 30
SQ = 48  # corner square size
BITS = 12
BIT = 16  # counter block size
SR = 48000
BEEP_HZ = 1000.0
BEEP_S = 0.1

RED, GREEN, BLUE, WHITE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128,) * 3


class Pattern:
    """The sender's picture for a given size (geometry scales with the frame)."""

    def __init__(self, w: int = W, h: int = H, noise: bool = True) -> None:
        self.w, self.h = w, h
        self.sq = SQ * w // W
        self.bit = BIT * w // W
        self.bar_y = h * 2 // 3
        self.noise = noise
        self._rng = np.random.default_rng(1)
        img = np.full((h, w, 3), 128, np.uint8)
        sq = self.sq
        img[:sq, :sq] = RED
        img[:sq, w - sq :] = GREEN
        img[h - sq :, :sq] = BLUE
        img[h - sq :, w - sq :] = WHITE
        self.base = img

    def counter_x(self, i: int) -> int:
        return (self.w - BITS * self.bit) // 2 + i * self.bit

    def draw(self, n: int, flash: bool) -> np.ndarray:
        img = self.base.copy()
        b = self.bit
        y = (self.h - b) // 2
        for i in range(BITS):
            img[y : y + b, self.counter_x(i) : self.counter_x(i) + b] = 255 if (n >> i) & 1 else 0
        if self.noise:
            # a moving noisy band so that frames span several RTP packets, like real video
            y0 = self.sq + (n * 2) % max(1, y - 2 * self.sq - 8)
            band = self._rng.integers(0, 256, (8, self.w - 2 * self.sq, 3), dtype=np.uint8)
            img[y0 : y0 + 8, self.sq : self.w - self.sq] = band
        if flash:
            img[self.bar_y : self.bar_y + b, self.sq : -self.sq] = 255
        return img

    def read_counter(self, img: np.ndarray) -> int:
        """Frame number from an RGB image at the sender's size."""
        b = self.bit
        y = (self.h - b) // 2 + b // 2
        n = 0
        for i in range(BITS):
            x = self.counter_x(i) + b // 2
            if img[y - 3 : y + 3, x - 3 : x + 3].mean() > 128:
                n |= 1 << i
        return n

    def is_flash(self, img: np.ndarray) -> bool:
        y = self.bar_y + self.bit // 2
        return bool(img[y - 3 : y + 3, self.w // 2 - 20 : self.w // 2 + 20].mean() > 200)


_DEFAULT = Pattern(noise=False)
read_counter = _DEFAULT.read_counter
is_flash = _DEFAULT.is_flash


@dataclass
class MediaStart:
    t0: float | None = None

    def start(self) -> float:
        if self.t0 is None:
            self.t0 = time.monotonic()
        return self.t0


class PatternVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(
        self, start: MediaStart, flash_every: int = 30, pattern: Pattern | None = None
    ) -> None:
        super().__init__()
        self._start = start
        self._n = 0
        self._flash_every = flash_every
        self.pattern = pattern or Pattern()
        self.sent_at: dict[int, float] = {}  # frame number -> monotonic hand-off time

    async def recv(self) -> av.VideoFrame:
        t0 = self._start.start()
        n = self._n
        self._n += 1
        delay = t0 + n / FPS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        img = self.pattern.draw(n % (1 << BITS), n % self._flash_every == 0)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent_at[n % (1 << BITS)] = time.monotonic()
        if len(self.sent_at) > 2000:
            self.sent_at.pop(next(iter(self.sent_at)))
        return frame


class BeepAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, start: MediaStart, beep_every: float = 1.0) -> None:
        super().__init__()
        self._start = start
        self._k = 0
        self._beep_every = beep_every

    async def recv(self) -> av.AudioFrame:
        t0 = self._start.start()
        k = self._k
        self._k += 1
        n = SR // 50
        delay = t0 + k * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        s = np.arange(k * n, (k + 1) * n)
        t = s / SR
        phase = np.mod(t, self._beep_every)
        pcm = np.where(phase < BEEP_S, 0.5 * np.sin(2 * math.pi * BEEP_HZ * t), 0.0)
        data = (pcm * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = SR
        frame.pts = k * n
        frame.time_base = fractions.Fraction(1, SR)
        return frame


@dataclass
class Loopback:
    sender: RTCPeerConnection
    receiver: RTCPeerConnection
    video: ReceivePipeline
    audio: ReceivePipeline
    video_track: PatternVideoTrack
    audio_track: BeepAudioTrack
    clock: AvClock
    offer_started: float
    drop: Callable[[int, int], bool] | None = None  # (payload type, seq) -> drop outgoing RTP?
    dropped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def video_receiver(self) -> RTCRtpReceiver:
        r = self.video.receiver
        assert r is not None
        return r

    async def close(self) -> None:
        await self.receiver.close()
        await self.sender.close()


def _prefer(transceiver: Any, codec: str) -> None:
    caps = RTCRtpReceiver.getCapabilities(transceiver.kind)
    assert caps is not None
    prefs = [
        c for c in caps.codecs if c.mimeType.lower() in (codec.lower(), f"{transceiver.kind}/rtx")
    ]
    transceiver.setCodecPreferences(prefs)


async def open_loopback(
    *,
    codec: str = "video/H264",
    flash_every: int = 30,
    attach: bool = True,
    size: tuple[int, int] = (W, H),
    noise: bool = True,
) -> Loopback:
    """Connect sender and receiver; ReceivePipelines attached before setRemoteDescription."""
    start = MediaStart()
    clock = AvClock()
    video = ReceivePipeline("video", clock=clock)
    audio = ReceivePipeline("audio", clock=clock)
    vtrack = PatternVideoTrack(start, flash_every, Pattern(size[0], size[1], noise))
    atrack = BeepAudioTrack(start, flash_every / FPS)
    with loopback_ice():
        rx = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tx = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        t0 = time.monotonic()
        vt = rx.addTransceiver("video", direction="recvonly")
        at = rx.addTransceiver("audio", direction="recvonly")
        _prefer(vt, codec)
        if attach:
            video.attach(vt.receiver)
            audio.attach(at.receiver)
        await rx.setLocalDescription(await rx.createOffer())
        await tx.setRemoteDescription(rx.localDescription)
        for t in tx.getTransceivers():
            t.sender.replaceTrack(vtrack if t.kind == "video" else atrack)
            t.direction = "sendonly"
        await tx.setLocalDescription(await tx.createAnswer())
        await rx.setRemoteDescription(tx.localDescription)
    lb = Loopback(tx, rx, video, audio, vtrack, atrack, clock, t0)
    # payload types from the answer: known before any RTP flows (the pipeline learns them later)
    for m in re.finditer(r"a=rtpmap:(\d+) ([\w-]+)/90000", tx.localDescription.sdp):
        key = "rtx_pts" if m.group(2).lower() == "rtx" else "video_pts"
        lb.extra.setdefault(key, set()).add(int(m.group(1)))

    transport = next(t for t in tx.getTransceivers() if t.kind == "video").sender.transport

    def wrap(original: SendRtp) -> SendRtp:
        async def send_rtp(data: bytes) -> None:
            is_rtp = len(data) > 12 and not (192 <= data[1] <= 223)
            if lb.drop is not None and is_rtp and lb.drop(data[1] & 0x7F, (data[2] << 8) | data[3]):
                lb.dropped += 1
                return
            await original(data)

        return send_rtp

    seam.intercept_outgoing_rtp(transport, wrap)
    return lb


@contextlib.asynccontextmanager
async def loopback(**kwargs: Any) -> AsyncIterator[Loopback]:
    lb = await open_loopback(**kwargs)
    try:
        yield lb
    finally:
        await lb.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
