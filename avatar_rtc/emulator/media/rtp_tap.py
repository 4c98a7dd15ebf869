"""RtpTap: sits on a DTLS transport's plain-RTP send to see (and optionally drop) outgoing RTP.

aiortc's RTCRtpSender sends every packet (and NACK retransmission, and RTCP) through its DTLS
transport before SRTP protection (``aiortc_seam.intercept_outgoing_rtp``), so the tap sees
exactly the outgoing plain RTP of every sender bundled on it. Used for: the RTP timestamp + send
time of each frame (timeline, latency), and deliberate video packet loss for client tests.
Retransmissions stay possible: the sender stores a packet in its history before sending it.

It also re-stamps RTCP sender reports: aiortc pairs the *send* time of the last packet with its
RTP timestamp, late by the encode and queueing delay (tens of ms under load); a real sender
(libwebrtc) pairs "now" with the RTP time of "now" on the capture clock, which is what clients
use to align audio and video.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.clock import current_ntp_time

from avatar_rtc.emulator.media.timeline import MediaKind
from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc.aiortc_seam import SendRtp

logger = logging.getLogger(__name__)

FrameSent = Callable[[MediaKind, int, int], None]  # kind, rtp timestamp, ssrc
# kind, RTP timestamp of the last frame sent, monotonic now -> RTP timestamp of "now" (or None)
SenderClock = Callable[[MediaKind, int, float], int | None]


@dataclass
class _Stream:
    kind: MediaKind
    last_timestamp: int | None = None


class RtpTap:
    def __init__(self, on_frame_sent: FrameSent, sender_clock: SenderClock | None = None) -> None:
        self._streams: dict[int, _Stream] = {}
        self._on_frame_sent = on_frame_sent
        self._sender_clock = sender_clock
        self._transports: list[Any] = []
        self.drop_video = 0  # drop this many of the next video RTP packets
        self.video_loss = 0.0  # and/or this fraction at random (seeded)
        self.dropped_video = 0
        self._rng = random.Random(0x5EED)

    def watch(self, ssrc: int, kind: MediaKind) -> None:
        self._streams[ssrc] = _Stream(kind)

    def install(self, transport: Any) -> None:
        """Tap ``transport``'s outgoing RTP (idempotent per transport)."""
        if any(t is transport for t in self._transports):
            return

        def wrap(original: SendRtp) -> SendRtp:
            async def send_rtp(data: bytes) -> None:
                if self._inspect(data):
                    await original(self._restamp_sender_report(data))

            return send_rtp

        seam.intercept_outgoing_rtp(transport, wrap)
        self._transports.append(transport)

    def uninstall(self) -> None:
        for transport in self._transports:
            seam.restore_outgoing_rtp(transport)
        self._transports.clear()

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

    def _restamp_sender_report(self, data: bytes) -> bytes:
        # An SR leads its compound packet: V=2, PT=200; sender info at bytes 8..28.
        if self._sender_clock is None or len(data) < 28 or data[0] >> 6 != 2 or data[1] != 200:
            return data
        stream = self._streams.get(struct.unpack_from("!I", data, 4)[0])
        if stream is None or stream.last_timestamp is None:
            return data
        ntp_now, now = current_ntp_time(), time.monotonic()
        rtp_now = self._sender_clock(stream.kind, stream.last_timestamp, now)
        if rtp_now is None:
            return data
        return data[:8] + struct.pack("!QI", ntp_now, rtp_now & 0xFFFFFFFF) + data[20:]

    def _should_drop(self) -> bool:
        if self.drop_video > 0:
            self.drop_video -= 1
            return True
        return self.video_loss > 0 and self._rng.random() < self.video_loss
