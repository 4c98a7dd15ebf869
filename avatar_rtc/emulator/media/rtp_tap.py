"""RtpTap: sits on a DTLS transport's ``_send_rtp`` to see (and optionally drop) outgoing RTP.

aiortc's RTCRtpSender sends every packet (and NACK retransmission, and RTCP) through
``self.transport._send_rtp(bytes)`` before SRTP protection, looked up on each call, so an
instance attribute on the transport intercepts exactly the outgoing plain RTP of every sender
bundled on it. Used for: the RTP timestamp + send time of each frame (timeline, latency), and
deliberate video packet loss for client tests. Retransmissions stay possible: the sender stores
a packet in its history before sending it.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from avatar_rtc.emulator.media.timeline import MediaKind

logger = logging.getLogger(__name__)

SendRtp = Callable[[bytes], Awaitable[None]]
FrameSent = Callable[[MediaKind, int, int], None]  # kind, rtp timestamp, ssrc


@dataclass
class _Stream:
    kind: MediaKind
    last_timestamp: int | None = None


class RtpTap:
    def __init__(self, on_frame_sent: FrameSent) -> None:
        self._streams: dict[int, _Stream] = {}
        self._on_frame_sent = on_frame_sent
        self._originals: list[tuple[Any, SendRtp]] = []
        self.drop_video = 0  # drop this many of the next video RTP packets
        self.video_loss = 0.0  # and/or this fraction at random (seeded)
        self.dropped_video = 0
        self._rng = random.Random(0x5EED)

    def watch(self, ssrc: int, kind: MediaKind) -> None:
        self._streams[ssrc] = _Stream(kind)

    def install(self, transport: Any) -> None:
        """Wrap ``transport._send_rtp`` (idempotent per transport)."""
        if any(t is transport for t, _ in self._originals):
            return
        original: SendRtp = transport._send_rtp

        async def send_rtp(data: bytes) -> None:
            if self._inspect(data):
                await original(data)

        transport._send_rtp = send_rtp
        self._originals.append((transport, original))

    def uninstall(self) -> None:
        for transport, _ in self._originals:
            transport.__dict__.pop("_send_rtp", None)
        self._originals.clear()

    def _inspect(self, data: bytes) -> bool:
        """True to send the packet."""
        # RTCP (payload type 200..208 with the marker bit position) passes untouched.
        if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
            return True
        timestamp, ssrc = struct.unpack_from("!II", data, 4)
        stream = self._streams.get(ssrc)
        if stream is None:  # RTX and unknown streams
            return True
        if stream.kind == "video" and self._should_drop():
            self.dropped_video += 1
            return False
        last = stream.last_timestamp
        # A newer timestamp starts a frame; an older one is a retransmission (no RTX).
        if last is None or 0 < (timestamp - last) & 0xFFFFFFFF < 0x80000000:
            stream.last_timestamp = timestamp
            try:
                self._on_frame_sent(stream.kind, timestamp, ssrc)
            except Exception:  # a broken hook must not stop media
                logger.exception("frame-sent hook failed")
        return True

    def _should_drop(self) -> bool:
        if self.drop_video > 0:
            self.drop_video -= 1
            return True
        return self.video_loss > 0 and self._rng.random() < self.video_loss
