"""Outlet: one fan-out viewer's send path, a 12-byte RTP header and an SRTP protect per packet.

The viewer's peer connection is negotiated as usual (:class:`~..media.viewer.Viewer`, with
tracks that never yield: its RTP senders stay idle), then the outlet sends the shared loop's
payloads straight to the DTLS transport's plain-RTP send (SRTP, ICE), bypassing aiortc's
per-frame packetizer and per-packet header extensions. Same seam as the emulator's RTP tap
(``intercept_outgoing_rtp``): it hands us that send, and lets us re-stamp the RTCP sender
reports aiortc still emits for the idle senders (zero NTP and RTP times otherwise, which
would break a receiver's A/V clock) with "now" on the fan-out clock.

NACKs are served from each video stream's history of its last ``HISTORY`` packets (like
aiortc's sender keeps ``RTP_HISTORY_SIZE``): the packet is sent again, RTX-wrapped (RFC 4588,
on the RTX SSRC and payload type of the answer) when the viewer negotiated RTX, else as is
with its own sequence number (what aiortc does without RTX). The history costs one list store
per video packet: it holds the very bytes sent, nothing is copied.

A PLI (or FIR) cannot get a fresh keyframe out of a loop encoded once: instead the viewer's
loop position jumps back to the latest keyframe at or before its current frame (at most
``GOP_SECONDS`` back), sent at its next frame tick with timestamps that go on running: the
viewer sees up to a second of the loop again, and a decodable picture within a frame.
"""

from __future__ import annotations

import functools
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
HISTORY = 128  # video packets kept for NACKs: aiortc's RTP_HISTORY_SIZE, ~1 s at 1 Mbit/s


class _Rtx:
    """The RTX stream (RFC 4588) paired with a video stream, when the viewer negotiated RTX."""

    __slots__ = ("payload_type", "sequence", "ssrc")

    def __init__(self, ssrc: int, payload_type: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence = random.getrandbits(16)

    def wrap(self, packet: bytes) -> bytes:
        """``packet`` (12-byte header) as RTX: own SSRC/PT/sequence, original sequence first."""
        marker = packet[1] & 0x80
        timestamp = int.from_bytes(packet[4:8], "big")
        header = _HEADER.pack(0x80, self.payload_type | marker, self.sequence, timestamp, self.ssrc)
        self.sequence = (self.sequence + 1) & 0xFFFF
        return header + packet[2:4] + packet[12:]


class _Stream:
    """One outgoing RTP stream of a viewer (its own SSRC, payload type and sequence)."""

    __slots__ = ("history", "octets", "packets", "payload_type", "rtx", "sequence", "ssrc")

    def __init__(self, ssrc: int, payload_type: int, *, history: bool = False) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence = random.getrandbits(16)
        self.packets = 0
        self.octets = 0
        # Indexed by sequence % HISTORY; None: no NACKs served (audio: not negotiated).
        self.history: list[bytes] | None = [b""] * HISTORY if history else None
        self.rtx: _Rtx | None = None

    def packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        sequence = self.sequence
        header = _HEADER.pack(
            0x80, self.payload_type | (0x80 if marker else 0), sequence, timestamp, self.ssrc
        )
        self.sequence = (sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        packet = header + payload
        if self.history is not None:
            self.history[sequence % HISTORY] = packet
        return packet

    def retransmission(self, sequence: int) -> bytes | None:
        """Packet ``sequence`` to send again (RTX-wrapped if negotiated); None: not kept."""
        if self.history is None:
            return None
        packet = self.history[sequence % HISTORY]
        if packet[2:4] != sequence.to_bytes(2, "big"):  # overwritten since, or never sent
            return None
        return packet if self.rtx is None else self.rtx.wrap(packet)


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
        self.retransmits = 0  # packets sent again for NACKs
        self.nack_misses = 0  # NACKed packets no longer in the history
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
            sender = transceiver.sender
            stream = _Stream(seam.sender_ssrc(sender), payload_types[kind], history=kind == "video")
            if kind == "video":
                stream.rtx = _negotiated_rtx(answer, transceiver.mid, stream.payload_type)
                seam.on_retransmit_request(sender, functools.partial(self._retransmit, stream))
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

    async def _retransmit(self, stream: _Stream, sequence: int) -> None:
        packet = stream.retransmission(sequence)
        if packet is None or self._send is None or self.closed:
            self.nack_misses += 1
            return
        self.retransmits += 1
        await self._send(packet)

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


def _negotiated_rtx(answer: sdp.SessionDescription, mid: str, payload_type: int) -> _Rtx | None:
    """The RTX payload type (``apt`` = ``payload_type``) and SSRC (``ssrc-group:FID``) of
    section ``mid`` of our answer; None when the viewer did not negotiate RTX."""
    for media in answer.media:
        if media.rtp.muxId != mid:
            continue
        rtx_types = [
            c.payloadType
            for c in media.rtp.codecs
            if c.mimeType.lower() == "video/rtx"
            and str(c.parameters.get("apt")) == str(payload_type)
            and c.payloadType is not None
        ]
        fid = [g.items for g in media.ssrc_group if g.semantic == "FID" and len(g.items) == 2]
        if rtx_types and fid:
            return _Rtx(int(fid[0][1]), rtx_types[0])
    return None
