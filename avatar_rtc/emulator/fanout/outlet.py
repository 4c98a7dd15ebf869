"""Outlet: one fan-out viewer's send path, a 12-byte RTP header and an SRTP protect per packet.

The viewer's peer connection is negotiated as usual (:class:`~..media.viewer.Viewer`, with
tracks that never yield: its RTP senders stay idle), then the outlet sends the shared loop's
payloads straight to the DTLS transport's plain-RTP send (SRTP, ICE), bypassing aiortc's
per-frame packetizer and per-packet header extensions. Same seam as the emulator's RTP tap
(``intercept_outgoing_rtp``): it hands us that send, and lets us re-stamp the RTCP sender
reports aiortc still emits for the idle senders (zero NTP and RTP times otherwise, which
would break a receiver's A/V clock) with "now" on the fan-out clock.

NACKs are not served (a load generator on loopback loses nothing until its receiver
overflows); a PLI makes the viewer jump back to the loop's latest keyframe.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable

from aiortc import sdp
from aiortc.clock import current_ntp_time

from avatar_rtc.emulator.media.timeline import MediaKind
from avatar_rtc.emulator.media.tracks import PacketTrack
from avatar_rtc.emulator.media.viewer import Viewer
from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc.aiortc_seam import SendRtp

__all__ = ["Outlet", "RtpClock"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")  # V=2, M+PT, sequence number, timestamp, SSRC
_SR_INFO = struct.Struct("!QIII")  # NTP time, RTP time, packet count, octet count
RtpClock = Callable[[MediaKind, float], int]  # kind, monotonic time -> RTP timestamp then


class _Stream:
    """One outgoing RTP stream of a viewer (its own SSRC, payload type and sequence)."""

    __slots__ = ("octets", "packets", "payload_type", "sequence", "ssrc")

    def __init__(self, ssrc: int, payload_type: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence = random.getrandbits(16)
        self.packets = 0
        self.octets = 0

    def packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        header = _HEADER.pack(
            0x80, self.payload_type | (0x80 if marker else 0), self.sequence, timestamp, self.ssrc
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return header + payload


class Outlet:
    """Sends the shared loop to one viewer; see the module docstring.

    Create it before the viewer (its tracks report when the senders start), then
    :meth:`bind` the negotiated viewer. ``shift``: how many frames this viewer's loop
    position trails the fan-out clock (moved by keyframe requests).
    """

    def __init__(self, clock: RtpClock) -> None:
        self._clock = clock
        self.video_track = PacketTrack("video", maxsize=1, on_start=self._started)
        self.audio_track = PacketTrack("audio", maxsize=1, on_start=self._started)
        self.viewer: Viewer | None = None
        self.video: _Stream | None = None
        self.audio: _Stream | None = None
        self.shift = 0
        self.keyframe_wanted = True  # its first picture must be a keyframe
        self.keyframe_requests = 0
        self.closed = False
        self._send: SendRtp | None = None
        self._transport: object | None = None

    @property
    def ready(self) -> bool:
        """DTLS is up and both senders run (aiortc starts them once connected)."""
        return self._send is not None and self.video_track.started and not self.closed

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.keyframe_wanted = True

    def bind(self, viewer: Viewer) -> None:
        """Take over the negotiated ``viewer``'s transport (one, bundled)."""
        self.viewer = viewer
        viewer.tap.uninstall()  # its frame hooks would fire for nothing: this outlet stamps
        answer = sdp.SessionDescription.parse(viewer.pc.localDescription.sdp)
        # aiortc's senders send the first codec of their section: so do we.
        payload_types = {
            m.kind: m.rtp.codecs[0].payloadType or 0 for m in answer.media if m.rtp.codecs
        }
        for transceiver in viewer.pc.getTransceivers():
            kind = transceiver.kind
            if transceiver.mid is None or kind not in payload_types:
                continue
            stream = _Stream(seam.sender_ssrc(transceiver.sender), payload_types[kind])
            if kind == "video":
                self.video = stream
            else:
                self.audio = stream
            if self._transport is None:
                self._transport = transceiver.sender.transport
                seam.intercept_outgoing_rtp(self._transport, self._wrap)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            seam.restore_outgoing_rtp(self._transport)
            self._transport = None

    async def send(self, stream: _Stream, payload: bytes, timestamp: int, marker: bool) -> None:
        assert self._send is not None
        await self._send(stream.packet(payload, timestamp, marker))

    def _started(self, track: PacketTrack) -> None:
        logger.debug("fan-out viewer: %s sender started", track.kind)

    def _wrap(self, original: SendRtp) -> SendRtp:
        self._send = original

        async def send_rtcp(data: bytes) -> None:
            # Only aiortc's own packets come this way (RTCP of the idle senders).
            await original(self._restamp_sender_report(data))

        return send_rtcp

    def _restamp_sender_report(self, data: bytes) -> bytes:
        # An SR leads its compound packet: V=2, PT=200, sender info at bytes 8..28.
        if len(data) < 28 or data[0] >> 6 != 2 or data[1] != 200:
            return data
        ssrc = struct.unpack_from("!I", data, 4)[0]
        streams: tuple[tuple[MediaKind, _Stream | None], ...] = (
            ("video", self.video),
            ("audio", self.audio),
        )
        for kind, stream in streams:
            if stream is not None and stream.ssrc == ssrc:
                rtp_now = self._clock(kind, time.monotonic()) & 0xFFFFFFFF
                info = _SR_INFO.pack(
                    current_ntp_time(),
                    rtp_now,
                    stream.packets & 0xFFFFFFFF,
                    stream.octets & 0xFFFFFFFF,
                )
                return data[:8] + info + data[28:]
        return data
