"""Video jitter buffer that releases a frame as soon as it is complete.

aiortc's buffer ignores the RTP marker bit and releases frame N only when the first packet of
frame N+1 arrives (+1 frame interval of latency), and stalls ~2 s on one lost packet. Here:

- A frame is complete when its packets are contiguous from the frame start to the packet
  carrying the marker bit (or, for senders that never set it, up to the first packet of the next
  timestamp). Frames are released strictly in sequence order, at once.
- The head frame waits for a missing packet (the pipeline NACKs it) for at most ``max_wait``
  seconds; then the buffer gives up: it drops what it cannot decode, resumes at the next complete
  keyframe it already holds, or else waits for one and asks the pipeline for a PLI.
- After a loss (and at start) frames are released only from a keyframe on: P-frames that
  reference a lost picture would decode into garbage.
- Bounded: at most ``max_packets`` packets are held; overflow drops the oldest and asks for a PLI.

Sequence numbers are extended (unwrapped) ints; RTP timestamps stay 32-bit here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor

__all__ = ["AssembledFrame", "VideoJitterBuffer", "parse_video_payload"]

logger = logging.getLogger(__name__)

_NAL_IDR = 5
_NAL_SPS = 7
_NAL_AUD = 9
_STAP_A = 24
_FU_A = 28


@dataclass(slots=True)
class AssembledFrame:
    data: bytes
    rtp_timestamp: int
    keyframe: bool
    first_seq: int
    last_seq: int
    arrival_time: float


@dataclass(slots=True)
class _Packet:
    timestamp: int
    marker: bool
    data: bytes
    key: bool
    arrival: float
    padding: bool = False


def _h264_nal_types(payload: bytes) -> list[int]:
    """NAL unit types carried by one H264 RTP payload (only starting FU-A fragments count)."""
    t = payload[0] & 0x1F
    if 1 <= t <= 23:
        return [t]
    if t == _FU_A:
        return [payload[1] & 0x1F] if len(payload) > 1 and payload[1] & 0x80 else []
    if t == _STAP_A:
        types = []
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            types.append(payload[pos + 2] & 0x1F)
            pos += 2 + size
        return types
    return []


def parse_video_payload(codec: str, payload: bytes) -> tuple[bytes, bool, bool]:
    """Depayload one RTP payload (aiortc's parsers) -> (data, starts_keyframe, has_key_data).

    ``starts_keyframe`` is reliable on its own (VP8 S=1/PID=0 with P=0; H264 leading SPS/AUD
    followed by an IDR or SPS). Raises ValueError on malformed payloads.
    """
    if codec == "VP8":
        desc, data = VpxPayloadDescriptor.parse(payload)
        start = bool(desc.partition_start) and desc.partition_id == 0
        key = start and len(data) > 0 and (data[0] & 0x01) == 0
        return data, key, key
    if codec == "H264":
        _desc, data = H264PayloadDescriptor.parse(payload)
        types = _h264_nal_types(payload)
        key = _NAL_IDR in types or _NAL_SPS in types
        key_start = bool(types) and types[0] in (_NAL_SPS, _NAL_AUD) and key
        return data, key_start, key
    return payload, True, True


class VideoJitterBuffer:
    def __init__(self, codec: str, *, max_packets: int = 2048, max_wait: float = 0.15) -> None:
        self.codec = codec
        self._max_packets = max_packets
        self._max_wait = max_wait
        self._packets: dict[int, _Packet] = {}
        self._key_starts: set[int] = set()
        self._highest: int | None = None
        # Release state: the next frame starts at ``_next`` (None: unknown, wait for a keyframe).
        self._next: int | None = None
        self._floor: int | None = None  # everything below was released or given up
        self._waiting_key = True
        # Scan cursor inside the head frame (avoids rescanning it for every packet).
        self._cur: int | None = None
        self._cur_ts = 0
        self._cur_key = False
        self._cur_parts: list[bytes] = []
        self._hole: int | None = None
        self._hole_since = 0.0
        self._pli_wanted = False
        self.frames_dropped = 0
        self.packets_late = 0

    # -- state ---------------------------------------------------------------------------
    @property
    def floor(self) -> int | None:
        return self._floor

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_key

    def __len__(self) -> int:
        return len(self._packets)

    def take_pli_request(self) -> bool:
        wanted, self._pli_wanted = self._pli_wanted, False
        return wanted

    # -- input ---------------------------------------------------------------------------
    def insert(
        self, seq: int, timestamp: int, marker: bool, payload: bytes, arrival: float
    ) -> bool:
        """Store one packet. False when it is late, a duplicate, or cannot be parsed."""
        if (self._floor is not None and seq < self._floor) or seq in self._packets:
            self.packets_late += 1
            return False
        if not payload:
            # Padding-only packet (bandwidth probing): it takes a sequence number, carries no
            # media, and must not look like a hole. It counts towards ``max_packets`` too.
            self._packets[seq] = _Packet(timestamp, False, b"", False, arrival, padding=True)
            key_start = False
        else:
            try:
                data, key_start, key = parse_video_payload(self.codec, payload)
            except ValueError as exc:
                logger.debug("jitter buffer: bad %s payload: %s", self.codec, exc)
                return False
            self._packets[seq] = _Packet(timestamp, marker, data, key, arrival)
        if key_start:
            self._key_starts.add(seq)
        if self._highest is None or seq > self._highest:
            self._highest = seq
        if len(self._packets) > self._max_packets:
            logger.warning("jitter buffer overflow (%d packets): resyncing", len(self._packets))
            self._give_up(self._highest - self._max_packets // 2)
            self._pli_wanted = True
        return True

    # -- output --------------------------------------------------------------------------
    def pop(self) -> list[AssembledFrame]:
        """Every frame that became releasable, in order."""
        out: list[AssembledFrame] = []
        while self._packets:
            if self._next is None and not self._jump_to_keyframe():
                break
            frame = self._scan()
            if frame is None:
                break
            if self._waiting_key and not frame.keyframe:
                self.frames_dropped += 1  # undecodable without its reference picture
                continue
            self._waiting_key = False
            out.append(frame)
        return out

    def expire(self, now: float) -> bool:
        """Give up on a head frame whose hole is older than ``max_wait``; True = want PLI."""
        if self._hole is None or now - self._hole_since < self._max_wait:
            return False
        hole = self._hole
        next_key = min((s for s in self._key_starts if s > hole), default=None)
        if next_key is not None:
            logger.debug("jitter buffer: packet %d lost, resuming at keyframe %d", hole, next_key)
            self._give_up(next_key)
            return False
        logger.debug("jitter buffer: packet %d lost, waiting for a keyframe", hole)
        self._give_up((self._highest or hole) + 1)
        return True

    # -- internals -----------------------------------------------------------------------
    def _jump_to_keyframe(self) -> bool:
        if not self._key_starts:
            return False
        start = min(self._key_starts)
        self._drop_below(start)
        self._set_next(start)
        self._waiting_key = True
        return True

    def _set_next(self, seq: int) -> None:
        self._next = seq
        self._floor = seq if self._floor is None else max(self._floor, seq)
        self._cur = None
        self._hole = None

    def _scan(self) -> AssembledFrame | None:
        """Advance the cursor through the head frame; return it once complete."""
        assert self._next is not None
        if self._cur is None:
            first = self._packets.get(self._next)
            while first is not None and first.padding:  # padding between frames: skip it
                del self._packets[self._next]
                self._set_next(self._next + 1)
                first = self._packets.get(self._next)
            if first is None:
                self._note_hole(self._next)
                return None
            self._cur = self._next
            self._cur_ts = first.timestamp
            self._cur_key = False
            self._cur_parts = []
        while True:
            pkt = self._packets.get(self._cur)
            if pkt is None:
                self._note_hole(self._cur)
                return None
            if pkt.padding:
                self._cur += 1
                continue
            if pkt.timestamp != self._cur_ts:
                # The sender did not set the marker bit: the frame ended before this packet.
                return self._release(self._cur - 1, self._packets[self._cur - 1].arrival)
            self._cur_parts.append(pkt.data)
            self._cur_key = self._cur_key or pkt.key
            if pkt.marker:
                return self._release(self._cur, pkt.arrival)
            self._cur += 1

    def _note_hole(self, seq: int) -> None:
        if self._highest is None or self._highest <= seq:
            self._hole = None  # nothing after it yet: not (known to be) lost
            return
        if self._hole != seq:
            self._hole = seq
            after = self._packets.get(seq + 1)
            self._hole_since = (
                after.arrival
                if after is not None
                else min(p.arrival for s, p in self._packets.items() if s > seq)
            )

    def _release(self, last: int, arrival: float) -> AssembledFrame:
        assert self._next is not None
        first = self._next
        frame = AssembledFrame(
            data=b"".join(self._cur_parts),
            rtp_timestamp=self._cur_ts,
            keyframe=self._cur_key,
            first_seq=first,
            last_seq=last,
            arrival_time=arrival,
        )
        for s in range(first, last + 1):
            del self._packets[s]
            self._key_starts.discard(s)
        self._cur_parts = []
        self._set_next(last + 1)
        return frame

    def _drop_below(self, seq: int) -> None:
        dropped = [s for s in self._packets if s < seq]
        if dropped:
            self.frames_dropped += len({self._packets[s].timestamp for s in dropped})
        for s in dropped:
            del self._packets[s]
        self._key_starts = {s for s in self._key_starts if s >= seq}
        self._floor = seq if self._floor is None else max(self._floor, seq)

    def _give_up(self, resume_at: int) -> None:
        self._drop_below(resume_at)
        self._next = None
        self._cur = None
        self._hole = None
        self._waiting_key = True
