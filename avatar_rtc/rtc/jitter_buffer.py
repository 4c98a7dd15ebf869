"""Video jitter buffer that releases a frame as soon as it is complete.

aiortc's buffer ignores the RTP marker bit and releases frame N only when the first packet of
frame N+1 arrives (+1 frame interval of latency), and stalls ~2 s on one lost packet. Here:

- A frame is all packets of one RTP timestamp. It starts where the codec says so (VP8 first
  partition start, H264 access unit delimiter), after a packet with the marker bit, a padding
  packet or a packet of another timestamp, or at the buffer floor (see below). It is complete
  when its packets are contiguous from that start to the packet carrying the marker bit (or,
  for senders that never set it, up to the first packet of the next timestamp). Frames are
  released strictly in sequence order, at once.
- A frame is a keyframe when one of its packets carries key data (H264: an IDR NAL unit, alone,
  in a STAP-A or as a starting FU-A; VP8: the start of a key frame's first partition). So
  SEI/AUD/SPS/PPS may come in any order before the IDR, or not at all (out-of-band parameter
  sets, see ``h264.with_parameter_sets``).
- After a loss (and at start) frames are released only from a keyframe on: P-frames that
  reference a lost picture would decode into garbage. The buffer indexes packets with key data
  and walks back from the earliest one to its frame start.
- The floor: everything below it was released or given up. The frame at the floor starts there
  after a release; after giving up it starts there only if the packet before it is known to
  have ended a frame (or a lost packet is known to have belonged to the frame before), else
  it is the tail of a broken frame and is skipped. At stream start (no floor yet) the lowest
  packet received counts as a start; a reordered earlier packet that arrives before the first
  frame is released moves that start back. (Only an H264 stream whose very first packet is
  lost cannot tell; a decoder error on that keyframe then asks the sender for another.)
- The head frame waits for a missing packet (the pipeline NACKs it) for at most ``max_wait``
  seconds; then the buffer gives up: it drops what it cannot decode, resumes at the next
  keyframe it already holds, or else waits for one and asks the pipeline for a PLI. Packets
  the pipeline will not NACK (``abandon``: a gap too long to repair by retransmission, e.g.
  an outage) are not waited for: their hole expires at the next ``expire``, and the frames
  resume at the first keyframe from the abandoned run's end on (an outage's NACKed tail may
  hold one).
- Bounded: at most ``max_packets`` packets are held; overflow drops the oldest and asks for a PLI.
- Never frozen for good: when no keyframe came ``keyframe_wait`` seconds after a loss (a sender
  deaf to PLI, or its keyframes lost too), the buffer conceals: it releases the next complete
  frames without one (decoders draw them over the stale picture, with artefacts, as aiortc and
  most players do) until a keyframe comes, from the packets of the last ``max_wait`` seconds on
  (older ones are dropped: late, and a burst the decoder could not take). Later losses before
  that keyframe do not wait again: the picture is already damaged. With ``conceal_at_once``
  (the pipeline sets it for a sender that answers no NACK, so every loss would freeze the
  picture until the keyframe asked for comes) a loss starts concealing as soon as its hole is
  given up on. ``keyframe_wait=None`` never conceals. The waits, the time spent in them, the
  timeouts and the frames released without a keyframe are counted.

Sequence numbers are extended (unwrapped) ints; RTP timestamps stay 32-bit here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor

from .h264 import carries_idr, starts_access_unit

__all__ = ["AssembledFrame", "ParsedPayload", "VideoJitterBuffer", "parse_video_payload"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AssembledFrame:
    data: bytes
    rtp_timestamp: int
    keyframe: bool
    first_seq: int
    last_seq: int
    arrival_time: float
    concealed: bool = False  # released while concealing (its references were lost)


@dataclass(slots=True)
class _Packet:
    timestamp: int
    marker: bool
    data: bytes
    key: bool
    starts_frame: bool
    arrival: float
    padding: bool = False

    def ends_frame_before(self, timestamp: int) -> bool:
        """True when the next packet, of RTP ``timestamp``, cannot belong to this frame."""
        return self.padding or self.marker or self.timestamp != timestamp


class ParsedPayload(NamedTuple):
    data: bytes  # depayloaded (H264: Annex-B)
    key: bool  # key data: the whole frame is a keyframe
    starts_frame: bool  # the codec says a frame begins with this packet


def parse_video_payload(codec: str, payload: bytes) -> ParsedPayload:
    """Depayload one RTP payload with aiortc's parsers. Raises ValueError when malformed.

    Key data: an H264 IDR NAL unit (or its first FU-A fragment), or the VP8 first partition
    start (S=1, PID=0) of a key frame (P=0). A frame surely starts at a VP8 first partition
    start and at an H264 access unit delimiter; elsewhere the packet before tells.
    """
    if codec == "VP8":
        desc, data = VpxPayloadDescriptor.parse(payload)
        start = bool(desc.partition_start) and desc.partition_id == 0
        return ParsedPayload(data, start and len(data) > 0 and (data[0] & 0x01) == 0, start)
    if codec == "H264":
        _desc, data = H264PayloadDescriptor.parse(payload)
        return ParsedPayload(data, carries_idr(payload), starts_access_unit(payload))
    return ParsedPayload(payload, True, True)


class VideoJitterBuffer:
    def __init__(
        self,
        codec: str,
        *,
        max_packets: int = 2048,
        max_wait: float = 0.15,
        keyframe_wait: float | None = 1.0,
    ) -> None:
        self.codec = codec
        self._max_packets = max_packets
        self.max_wait = max_wait
        self._keyframe_wait = keyframe_wait
        self._packets: dict[int, _Packet] = {}
        self._key_packets: set[int] = set()  # seqs of packets that carry key data
        self._highest: int | None = None
        self._lowest: int | None = None  # lowest seq received while there is no floor yet
        # Release state: the next frame starts at ``_next`` (None: unknown, find a keyframe).
        self._next: int | None = None
        self._next_tentative = False  # ``_next`` is the stream-start guess (no floor yet)
        self._floor: int | None = None  # everything below was released or given up
        # Whether the frame at the floor starts there; if not, the broken frame's timestamp
        # (None: unknown, then whatever frame straddles the floor is broken).
        self._floor_starts = True
        self._floor_tail_ts: int | None = None
        self._waiting_key = True
        # Walk back from the earliest key packet to its frame start (resumed, not restarted).
        self._walk_key: int | None = None
        self._walk_pos = 0
        # Scan cursor inside the head frame (avoids rescanning it for every packet).
        self._cur: int | None = None
        self._cur_ts = 0
        self._cur_key = False
        self._cur_parts: list[bytes] = []
        self._hole: int | None = None
        self._hole_since = 0.0
        self._abandon_below: int | None = None  # missing packets below it will not come
        self._pli_wanted = False
        self._key_arrived = False  # a packet with key data came since ``take_key_arrival``
        # Keyframe wait after a loss (None: not waiting, or at stream start) and concealment.
        self._released_any = False
        self._key_wait_since: float | None = None
        self._conceal = False
        self._conceal_at = 0.0
        self.conceal_at_once = False
        self.frames_dropped = 0
        self.packets_late = 0
        self.keyframe_waits = 0  # losses after which frames stopped until a keyframe (or timeout)
        self.keyframe_wait_time = 0.0  # seconds spent in those waits
        self.keyframe_wait_timeouts = 0
        self.frames_without_keyframe = 0  # released while concealing

    # -- state ---------------------------------------------------------------------------
    @property
    def floor(self) -> int | None:
        """Lowest sequence number still wanted; None until the buffer knows where to start."""
        return self._floor if self._floor is not None else self._next

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_key

    @property
    def wants_keyframe(self) -> bool:
        """Waiting for a keyframe, or concealing until one comes: keep asking for it."""
        return self._waiting_key or self._conceal

    @property
    def waits_on_time(self) -> bool:
        """``expire`` has work to come: a hole in the head frame (given up after
        ``max_wait``), or a keyframe wanted (asked for again; concealment after
        ``keyframe_wait``). Packets of a frame still arriving in order are not: nothing expires
        until a later packet shows a hole."""
        return self._hole is not None or self._waiting_key or self._conceal

    @property
    def concealing(self) -> bool:
        return self._conceal

    @property
    def hole_abandoned(self) -> bool:
        """The head frame waits for a packet that will not be asked for: ``expire`` gives it
        up at once."""
        hole, below = self._hole, self._abandon_below
        return hole is not None and below is not None and hole < below

    @property
    def keyframe_wait_started(self) -> float | None:
        """When the keyframe wait under way began (None: frames flow)."""
        return self._key_wait_since

    def __len__(self) -> int:
        return len(self._packets)

    def take_pli_request(self) -> bool:
        wanted, self._pli_wanted = self._pli_wanted, False
        return wanted

    def take_key_arrival(self) -> bool:
        """True when a packet with key data came since the last call."""
        arrived, self._key_arrived = self._key_arrived, False
        return arrived

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
            self._packets[seq] = _Packet(timestamp, False, b"", False, False, arrival, True)
        else:
            try:
                data, key, starts = parse_video_payload(self.codec, payload)
            except ValueError as exc:
                logger.debug("jitter buffer: bad %s payload: %s", self.codec, exc)
                return False
            self._packets[seq] = _Packet(timestamp, marker, data, key, starts, arrival)
            if key:
                self._key_packets.add(seq)
                self._key_arrived = True
        if self._highest is None or seq > self._highest:
            self._highest = seq
        if self._floor is None and (self._lowest is None or seq < self._lowest):
            self._lowest = seq
            if self._next_tentative and self._next is not None and seq < self._next:
                # Reordered at stream start: the first frame may begin earlier, look again.
                self._next = None
                self._cur = None
                self._hole = None
                self._next_tentative = False
        if len(self._packets) > self._max_packets:
            logger.warning("jitter buffer overflow (%d packets): resyncing", len(self._packets))
            self._give_up(self._highest - self._max_packets // 2)
            self._start_keyframe_wait(arrival)
            self._pli_wanted = True
        return True

    # -- output --------------------------------------------------------------------------
    def pop(self) -> list[AssembledFrame]:
        """Every frame that became releasable, in order."""
        out: list[AssembledFrame] = []
        while self._packets:
            if self._next is None:
                start = self._keyframe_start()
                if start is None and self._conceal:
                    start = self._frame_start()
                if start is None:
                    break
                self._jump(start)
            frame = self._scan()
            if frame is None:
                break
            if self._waiting_key and not frame.keyframe and not self._conceal:
                self.frames_dropped += 1  # undecodable without its reference picture
                continue
            self._on_release(frame)
            out.append(frame)
        return out

    def abandon(self, below: int) -> None:
        """Missing packets below ``below`` will not be NACKed: do not wait for them."""
        if self._abandon_below is None or below > self._abandon_below:
            self._abandon_below = below

    def expire(self, now: float) -> bool:
        """Give up on a head frame whose hole is older than ``max_wait`` (or abandoned);
        True = want PLI.

        Also starts concealing once a keyframe wait is older than ``keyframe_wait``."""
        since = self._key_wait_since
        wait = self._keyframe_wait
        if since is not None and wait is not None and not self._conceal and now - since >= wait:
            self._conceal = True
            self._conceal_at = now
            self.keyframe_wait_timeouts += 1
            logger.warning(
                "video: no keyframe %.1f s after a loss; decoding without one until it comes",
                now - since,
            )
            # Resume with recent frames: a second of backlog released at once would be late
            # and overflow the decoder's queue (which then waits for a keyframe in turn).
            recent = [s for s, p in self._packets.items() if p.arrival >= now - self.max_wait]
            if self._packets:
                assert self._highest is not None
                self._give_up(min(recent) if recent else self._highest + 1)
        if self._hole is None:
            return False
        hole = self._hole
        # An abandoned run ends where the pipeline's NACKs (an outage's tail) begin: those
        # packets may still come, and a keyframe among them.
        below = self._abandon_below
        abandoned = below is not None and hole < below
        if not abandoned and now - self._hole_since < self.max_wait:
            return False
        self._give_up(below if below is not None and abandoned else hole + 1)
        self._keyframe_start()  # forgets key packets of the frame the hole broke
        if self._key_packets:
            logger.debug("jitter buffer: packet %d lost, resuming at a later keyframe", hole)
            return False
        if self._conceal:  # the picture is damaged already: go on with the next frame
            logger.debug("jitter buffer: packet %d lost, concealing on", hole)
            return True
        assert self._highest is not None  # a hole is only noted below the highest packet
        if self.conceal_at_once and self._keyframe_wait is not None and self._released_any:
            logger.debug("jitter buffer: packet %d lost, concealing until a keyframe", hole)
            self._conceal = True
            self._conceal_at = now
            return True
        logger.debug("jitter buffer: packet %d lost, waiting for a keyframe", hole)
        self._start_keyframe_wait(now)
        if not abandoned:  # what is held cannot be decoded; after an abandoned run, a
            self._give_up(self._highest + 1)  # keyframe may still come from its tail
        return True

    # -- internals -----------------------------------------------------------------------
    def _keyframe_start(self) -> int | None:
        """Start of the earliest keyframe held; None while it is unknown (or there is none).

        Walks back from the earliest key packet over packets of its timestamp to a packet
        that starts a frame. A missing packet on the way is a hole (NACKed; ``expire`` gives
        up on it); reaching the floor where a broken frame straddles it discards that key.
        """
        while self._key_packets:
            key = min(self._key_packets)
            if key != self._walk_key:
                self._walk_key, self._walk_pos = key, key
            ts = self._packets[key].timestamp
            seq = self._walk_pos
            while seq != self._floor and not self._packets[seq].starts_frame:
                prev = self._packets.get(seq - 1)
                if prev is None or prev.ends_frame_before(ts):
                    break
                seq -= 1
            self._walk_pos = seq
            if self._packets[seq].starts_frame or self._packets.get(seq - 1) is not None:
                return seq  # the codec or the packet before says a frame starts here
            if seq == self._floor:
                tail = self._floor_tail_ts
                if self._floor_starts or (tail is not None and ts != tail):
                    return seq
                self._key_packets.discard(key)  # tail of a frame given up on: not decodable
                continue
            if self._floor is None and seq == self._lowest:
                return seq  # stream start: nothing earlier received (yet)
            self._note_hole(seq - 1)  # that packet may be this frame's first
            return None
        self._hole = None
        return None

    def _frame_start(self) -> int | None:
        """The earliest held packet known to start a frame (concealing: any frame will do)."""
        for seq in sorted(self._packets):
            pkt = self._packets[seq]
            if pkt.padding:
                continue
            if seq == self._floor:
                tail = self._floor_tail_ts
                if self._floor_starts or (tail is not None and pkt.timestamp != tail):
                    return seq
            prev = self._packets.get(seq - 1)
            if pkt.starts_frame or (prev is not None and prev.ends_frame_before(pkt.timestamp)):
                return seq
        return None

    def _on_release(self, frame: AssembledFrame) -> None:
        """Bookkeeping of a frame about to be released: end of a keyframe wait, concealment."""
        since = self._key_wait_since
        if since is not None:
            end = (
                frame.arrival_time if frame.keyframe else max(frame.arrival_time, self._conceal_at)
            )
            self.keyframe_wait_time += max(0.0, end - since)
            self._key_wait_since = None
        if frame.keyframe:
            if self._conceal:
                logger.info("video: keyframe received, concealment over")
            self._conceal = False
        elif self._conceal:
            self.frames_without_keyframe += 1
            frame.concealed = True
        self._waiting_key = False
        self._released_any = True

    def _jump(self, start: int) -> None:
        self._waiting_key = True
        if self._floor is None and start == self._lowest:
            # Tentative until the frame is released: a reordered earlier packet may still come.
            self._next = start
            self._next_tentative = True
            self._cur = None
            self._hole = None
            return
        self._drop_below(start)
        self._set_next(start)

    def _set_next(self, seq: int) -> None:
        """The next frame starts at ``seq`` (a known frame start)."""
        self._next = seq
        self._next_tentative = False
        if self._floor is None or seq >= self._floor:
            self._floor = seq
            self._floor_starts = True
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
            self._key_packets.discard(s)
        self._cur_parts = []
        self._set_next(last + 1)
        return frame

    def _drop_below(self, seq: int) -> None:
        dropped = [s for s in self._packets if s < seq]
        if dropped:
            self.frames_dropped += len({self._packets[s].timestamp for s in dropped})
        for s in dropped:
            del self._packets[s]
        self._key_packets = {s for s in self._key_packets if s >= seq}
        self._floor = seq if self._floor is None else max(self._floor, seq)
        self._walk_key = None  # a walk in progress may have stepped below the new floor

    def _start_keyframe_wait(self, now: float) -> None:
        """Frames stop until a keyframe comes (not at stream start, nor while concealing:
        frames flow on at once then)."""
        if self._released_any and self._key_wait_since is None and not self._conceal:
            self._key_wait_since = now
            self.keyframe_waits += 1

    def _give_up(self, resume_at: int) -> None:
        """Drop everything below ``resume_at`` and wait for a keyframe from there on."""
        # Does a frame start at ``resume_at``? Only if the packet before it ended one; a
        # missing packet may have been that frame's first (SPS/PPS, first slice). But one
        # missing packet after an unfinished frame belonged to that frame.
        prev = self._packets.get(resume_at - 1)
        if prev is None:
            before = self._packets.get(resume_at - 2)
            if before is not None and not (before.padding or before.marker):
                prev = before
        self._drop_below(resume_at)
        if self._floor == resume_at:
            self._floor_starts = prev is not None and (prev.padding or prev.marker)
            self._floor_tail_ts = None if prev is None else prev.timestamp
        self._next = None
        self._next_tentative = False
        self._cur = None
        self._hole = None
        self._waiting_key = True
