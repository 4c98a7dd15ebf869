"""PacketTrack: an aiortc track whose ``recv()`` returns already encoded ``EncodedPacket``s.

aiortc's RTCRtpSender calls ``encoder.pack(packet)`` for packets instead of encoding, so one
encode serves every viewer. A track only receives packets once its sender starts pulling (first
``recv()``): packets made before the DTLS handshake finished would be stale, and the first
picture must be a keyframe, which ``on_start`` lets the owner request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from avatar_rtc.emulator.media.encoder import EncodedPacket

logger = logging.getLogger(__name__)


class PacketTrack(MediaStreamTrack):
    def __init__(
        self,
        kind: Literal["audio", "video"],
        *,
        maxsize: int,
        on_start: Callable[[PacketTrack], None] | None = None,
        on_overflow: Callable[[PacketTrack], None] | None = None,
        on_stop: Callable[[PacketTrack], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.started = False
        self.last_pts: int | None = None  # pts of the packet the sender is sending now
        self.dropped = 0
        self._queue: asyncio.Queue[EncodedPacket | None] = asyncio.Queue(maxsize)
        self._on_start = on_start
        self._on_overflow = on_overflow
        self._on_stop = on_stop

    def push(self, packet: EncodedPacket) -> None:
        """Hand a packet to the sender (called on the event loop). Drops the oldest when full."""
        if not self.started or self.readyState != "live":
            return
        if self._queue.full():
            # The sender is not keeping up: drop the oldest; for video the owner must follow
            # with a keyframe since the dropped packet broke the prediction chain.
            self._queue.get_nowait()
            self.dropped += 1
            if self._on_overflow is not None:
                self._on_overflow(self)
        self._queue.put_nowait(packet)

    async def recv(self) -> EncodedPacket:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.started:
            self.started = True
            if self._on_start is not None:
                self._on_start(self)
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        self.last_pts = packet.pts
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            # Wake a pending recv() so the sender's loop ends.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            if self._on_stop is not None:
                self._on_stop(self)
