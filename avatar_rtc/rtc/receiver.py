"""ReceivePipeline: our RTP receive path on top of an aiortc ``RTCRtpReceiver``.

aiortc stays the transport (ICE, DTLS, SRTP, RTCP RR). From the moment SRTP is unprotected, the
packets are ours: RTX unwrap -> depayload -> jitter buffer (video released on the marker bit;
audio per packet, put back in order by ``audio_reorder``) -> NACK with retries / PLI ->
:class:`EncodedFrame` subscribers.

Loss repair, bounded both ways: NACK volume stays a fraction of the packet rate and long loss
bursts (our own receive-buffer overflow, outages) get a PLI instead (``nack``); a hole is waited
for as long as two retransmissions take on the measured NACK round trip (``max_wait`` at least,
``MAX_RETRANSMIT_WAIT`` at most: at 5 % loss and 100 ms of round trip a fixed 150 ms gave up on
most retransmissions and froze until the next keyframe; on a longer round trip, one retry's
answer, see ``retransmit_wait``); a PLI nobody answers (no packet of a
keyframe comes) is repeated with backoff (``pli_retry`` doubling to ``pli_retry_max``), and
after ``keyframe_wait`` seconds the jitter buffer releases frames without a keyframe
(concealment) so video never stays frozen; ``stats()`` counts the waits either way.

A sender that answers no NACK (its SDP answer has no generic ``nack`` feedback, as GStreamer's
webrtcbin, or ``NackTracker.sender_repairs`` found it deaf) would freeze the picture at every
loss until the keyframe asked for comes: for it a hole is waited for only ``REORDER_WAIT`` and
the frames after it are concealed at once (unless ``keyframe_wait`` is None), as aiortc,
ffplay and VLC do; the PLI still goes out.

How the receiver is taken over (``attach``): we replace three methods **on the instance**
(not the class, so other receivers in the process are untouched):

- ``receive(parameters)``: wrapped to learn the negotiated payload types and RTX SSRCs before
  aiortc registers the receiver with the transport's RTP router, and to start our timer.
  aiortc still starts its decoder thread there; it blocks on an empty queue forever (no CPU,
  no memory) because nothing is ever put into it, and its track queue stays empty.
- the RTP packet handler: the DTLS transport looks it up on the instance for every routed
  packet, so the override sees every packet and aiortc's jitter buffer/decoder never do.
  Once the receiver is registered, ``datagram_batch`` hands SRTP RTP to the same code
  synchronously, straight from the socket (see there); the override stays for the rest.
- the RTCP packet handler: we read sender reports for the A/V clock, then call the original so
  aiortc's LSR/DLSR bookkeeping (and so its receiver reports) keep working.

aiortc's RR loop reads per-SSRC ``StreamStatistics`` from a name-mangled dict that its own
packet handler fills; we fill the same dict (same class) so RRs stay correct, and we keep its
REMB feedback (same estimator class; the RTCP SSRC is read from the receiver). Every one of those
private names is reached through ``aiortc_seam``, which checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)

from . import aiortc_seam as seam
from . import datagram_batch, h264
from .audio_reorder import AudioReorderBuffer
from .clock import AvClock
from .encoded_frame import EncodedFrame, MediaKind
from .jitter_buffer import AssembledFrame, VideoJitterBuffer
from .nack import RETRY_RTTS, NackTracker

__all__ = ["ReceivePipeline", "ReceiveStats"]

logger = logging.getLogger(__name__)

MAX_RETRANSMIT_WAIT = 0.5  # seconds: past this a keyframe repairs sooner than retries would
# seconds: the longest wait for one retry's answer, on a round trip too long for two in the above
MAX_ONE_RETRY_WAIT = 1.0
RETRANSMIT_SLACK = 0.05  # seconds over the three round trips (NACK pacing, a frame interval)
NACK_ECHO_AFTER = 0.02  # a first NACK goes again this long after (nack.py: echo)
# seconds a hole is waited for when the sender answers no NACK: reordering only
REORDER_WAIT = 0.03
# The video timer's period while something waits on time (NACK retries, a hole's give-up, a
# PLI), and while nothing does: then the packet path wakes it when that changes. Polling 20
# times a second for nothing was a quarter of a one-session event loop's wake-ups (75 -> 58 a
# second).
BUSY_TICK = 0.01
IDLE_TICK = 0.5

FrameCallback = Callable[[EncodedFrame], None]
_AudioPacket = tuple[bytes, int, float]  # payload, RTP timestamp (32-bit), arrival (monotonic)


@dataclass(frozen=True, slots=True)
class ReceiveStats:
    kind: MediaKind
    codec: str | None
    packets: int
    bytes: int
    rtx_packets: int
    late_packets: int
    lost: int
    frames: int
    keyframes: int
    frames_dropped: int
    nacks_sent: int
    nacked_packets: int
    recovered_packets: int
    plis_sent: int
    sender_reports: int
    clock_source: str | None
    # Video frozen for want of a keyframe after a loss: how often, for how long in all, how
    # often the wait timed out, and the frames released without a keyframe since (concealed).
    keyframe_waits: int = 0
    keyframe_wait_time: float = 0.0
    keyframe_wait_timeouts: int = 0
    frames_without_keyframe: int = 0
    # NACK volume bounds: gaps too long to NACK (a PLI instead), packets never NACKed (budget).
    loss_bursts: int = 0
    nacks_throttled: int = 0
    # Whether the sender answers NACKs (False when it did not negotiate them, or once 16 NACKed
    # packets in a row never came), and how long a missing packet is waited for now, in
    # seconds (video: for a retransmission; audio: for a reordered packet).
    sender_repairs: bool = True
    hole_wait: float = 0.0
    # Seconds the A/V clock is still slewing out of this track's timestamps after a mapping
    # change (the switch to sender-report timing); 0.0 once settled.
    clock_correction: float = 0.0
    # Outages whose lost tail was NACKed as soon as the transport carried anything again,
    # before this stream's own next packet (``NackTracker.guess_outage_tail``).
    early_tail_nacks: int = 0
    # First NACKs sent again 20 ms later on a long round trip (``NackTracker``: echoes).
    nack_echoes: int = 0
    # Retransmissions that came after their hole was given up (received, but too late to be
    # decoded with), and missing packets still asked for when these stats were taken (not
    # lost for good yet). Both are counted in ``lost``, which is aiortc's count of first
    # transmissions missed.
    late_repairs: int = 0
    repairs_awaited: int = 0
    # Audio: packets that came after a later one and were put back in order (audio that
    # was dropped as late before the reorder buffer; ``late_packets`` counts those that came
    # after their hole was given up).
    reordered_packets: int = 0

    @property
    def expected(self) -> int:
        """Packets the sender sent on the media stream: first transmissions received + lost."""
        return max(self.packets - self.rtx_packets, 0) + max(self.lost, 0)

    @property
    def unrepaired(self) -> int:
        """Packets lost for good: never received, not even as a retransmission.

        ``lost`` counts first transmissions missed. Over RTX (its own SSRC) the retransmissions
        that came are taken off: in time (``recovered_packets``) or too late to be decoded with
        (``late_repairs``: received, so not lost; what their lateness cost shows as freezes).
        Without RTX a retransmission lands on the media SSRC, and ``lost`` already nets it.
        Packets still asked for (``repairs_awaited``) are not lost yet."""
        never = self.lost - self.repairs_awaited
        if self.rtx_packets:
            never -= self.recovered_packets + self.late_repairs
        return max(0, never)


class _Unwrapper:
    """Extends a wrapping counter (16-bit seq, 32-bit timestamp) to a monotonic int."""

    __slots__ = ("_half", "_last", "_mod")

    def __init__(self, bits: int) -> None:
        self._mod = 1 << bits
        self._half = 1 << (bits - 1)
        self._last: int | None = None

    def __call__(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        diff = (value - self._last) % self._mod
        if diff >= self._half:
            diff -= self._mod
        ext = self._last + diff
        if ext > self._last:
            self._last = ext
        return ext


@dataclass(slots=True)
class _KeyframeWaits:
    """Keyframe-wait counters of jitter buffers replaced (new stream) or freed (close)."""

    waits: int = 0
    time: float = 0.0
    timeouts: int = 0
    without_keyframe: int = 0

    def add(self, jb: VideoJitterBuffer, now: float) -> None:
        started = jb.keyframe_wait_started  # a wait under way counts up to now
        self.waits += jb.keyframe_waits
        self.time += jb.keyframe_wait_time + (0.0 if started is None else now - started)
        self.timeouts += jb.keyframe_wait_timeouts
        self.without_keyframe += jb.frames_without_keyframe


class ReceivePipeline:
    """Receive path for one track; see the module docstring.

    Subscribers are called on the event-loop thread and must return quickly.
    """

    def __init__(
        self,
        kind: MediaKind,
        *,
        clock: AvClock | None = None,
        max_wait: float = 0.15,
        nack_interval: float = 0.02,
        nack_retries: int = 10,
        pli_interval: float = 0.3,
        pli_retry: float = 0.5,
        pli_retry_max: float = 4.0,
        keyframe_wait: float | None = 1.0,
        max_packets: int = 2048,
        remb: bool = True,
        read_interval: float = 0.0,
    ) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"unknown kind {kind!r}")
        self.kind: MediaKind = kind
        self.clock = clock if clock is not None else AvClock()
        self._max_wait = max_wait
        self._pli_interval = pli_interval
        self._pli_retry = pli_retry
        self._pli_retry_max = pli_retry_max
        self._keyframe_wait = keyframe_wait
        self._max_packets = max_packets
        self._read_interval = read_interval
        self._nack = NackTracker(
            retry_interval=nack_interval,
            max_retries=nack_retries,
            max_age=max_wait,
            echo_after=NACK_ECHO_AFTER,
        )
        # Keep aiortc's REMB feedback (from abs-send-time): senders that negotiated goog-remb
        # would otherwise never learn they may raise their bitrate.
        self._remb = RemoteBitrateEstimator() if remb and kind == "video" else None
        self._receiver: RTCRtpReceiver | None = None
        self._batch: datagram_batch.DatagramBatch | None = None
        self._send_tasks: set[asyncio.Task[None]] = set()  # feedback sent from the fast path
        self._orig_rtcp: Callable[[Any], Any] | None = None
        self._remote_streams: dict[int, StreamStatistics] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[bool] | None = None  # the timer's wait while idle
        self._pli_tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak refs
        self._subscribers: list[FrameCallback] = []
        self._close_callbacks: list[Callable[[], None]] = []
        self._codecs: dict[int, RTCRtpCodecParameters] = {}
        self._parameter_sets: dict[int, str] = {}  # payload type -> sprop-parameter-sets
        self._rtx_ssrc: dict[int, int] = {}
        self._codec: RTCRtpCodecParameters | None = None
        self._codec_name: str | None = None  # aiortc's ``name`` splits the mimeType per call
        self._rtx_types: set[int] = set()  # payload types of RTX
        self._nack_types: set[int] = set()  # payload types that negotiated generic NACK
        self._ssrc: int | None = None
        self._seq = _Unwrapper(16)
        self._ts = _Unwrapper(32)
        self._jb: VideoJitterBuffer | None = None
        # Until the stream is known to start at a keyframe (or a PLI asked for one): the RTP
        # timestamp of its first media packet (None before it).
        self._checking_start = False
        self._start_timestamp: int | None = None
        self._reorder = AudioReorderBuffer[_AudioPacket]() if kind == "audio" else None
        self._last_pli = -1e9
        self._pli_next = -1e9  # no PLI before (interval, or backoff while none is answered)
        self._pli_backoff = pli_retry
        self._pli_pending = False
        self._closed = False
        # counters
        self._packets = 0
        self._bytes = 0
        self._rtx = 0
        self._late = 0
        self._frames = 0
        self._keyframes = 0
        self._dropped_extra = 0  # frames dropped by jitter buffers of earlier streams
        self._retired = _KeyframeWaits()  # keyframe waits of earlier streams' jitter buffers
        self._nacks_sent = 0
        self._nacked = 0
        self._plis = 0
        self._srs = 0
        self._last_activity: float | None = None  # time.monotonic(): last RTP packet or SR

    # -- public API ----------------------------------------------------------------------
    @property
    def codec(self) -> str | None:
        """Negotiated codec name of the current stream (``"H264"``, ``"VP8"``, ``"opus"``)."""
        return None if self._codec is None else self._codec.name

    @property
    def payload_types(self) -> dict[int, str]:
        """Negotiated payload types -> mimeType (RTX included), once ``receive`` ran."""
        return {pt: c.mimeType for pt, c in self._codecs.items()}

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pipeline runs on (known once attached inside a running loop)."""
        return self._loop

    @property
    def receiver(self) -> RTCRtpReceiver | None:
        return self._receiver

    def attach(self, receiver: RTCRtpReceiver) -> None:
        """Take over ``receiver``'s RTP handling. Call before ``setRemoteDescription``.

        Attaching to another receiver moves the pipeline there (a WHEP 406 counter-offer is
        answered on a new peer connection): the old receiver gets aiortc's own handlers back,
        so closing its peer connection no longer closes the pipeline or its streams.
        """
        if receiver is self._receiver:
            return
        if self._receiver is not None:
            self._detach()
        self._remote_streams = seam.receiver_statistics(receiver)
        self._receiver = receiver
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            self._learn(parameters)
            await orig_receive(parameters)
            self._start_timer()
            if self._batch is None and not self._closed:
                self._batch = datagram_batch.attach(
                    receiver,
                    self.on_rtp_packet,
                    on_path_back=self.on_path_back,
                    read_interval=self._read_interval,
                )

        async def stop() -> None:
            self.close()
            await orig_stop()

        orig_receive, orig_stop, self._orig_rtcp = seam.take_over_receiver(
            receiver, on_receive=receive, on_stop=stop, on_rtp=self._on_rtp, on_rtcp=self._on_rtcp
        )

    def _leave_batch(self) -> None:
        if self._batch is not None and self._receiver is not None:
            self._batch.remove(self._receiver)
        self._batch = None

    def _detach(self) -> None:
        self._leave_batch()
        if self._receiver is not None:
            seam.release_receiver(self._receiver)
        self._receiver = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._codecs.clear()
        self._rtx_types.clear()
        self._nack_types.clear()
        logger.info("ReceivePipeline(%s): moved to a new receiver", self.kind)

    def use_remote_description(self, sdp: str) -> None:
        """Keep what aiortc drops of the remote SDP: H264 ``sprop-parameter-sets`` (its
        negotiated codecs are copies of our own, without the remote fmtp)."""
        self._parameter_sets = h264.sprop_by_payload_type(sdp)

    def subscribe(self, callback: FrameCallback) -> Callable[[], None]:
        """Call ``callback(frame)`` for every released frame; returns the unsubscriber."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (on the loop) when the pipeline closes; returns the remover."""
        self._close_callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._close_callbacks.remove(callback)

        return remove

    @property
    def frames_released(self) -> int:
        return self._frames

    @property
    def closed(self) -> bool:
        return self._closed

    def request_keyframe(self) -> None:
        """Ask the sender for a keyframe (PLI), rate-limited. Safe from any thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        if _on_loop_thread(loop):
            self._request_pli()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(self._request_pli)

    @property
    def last_activity(self) -> float | None:
        """``time.monotonic()`` of the last RTP packet or sender report (None before any):
        what the media watchdog reads, without building the whole of ``stats()``."""
        return self._last_activity

    def stats(self) -> ReceiveStats:
        stream = self._remote_streams.get(self._ssrc) if self._ssrc is not None else None
        lost = stream.packets_lost if stream is not None else 0
        dropped = self._dropped_extra + (self._jb.frames_dropped if self._jb is not None else 0)
        late = self._late + (self._jb.packets_late if self._jb is not None else 0)
        reorder = self._reorder
        if reorder is not None:
            late += reorder.late
        now = time.monotonic()
        waits = replace(self._retired)  # a copy
        if self._jb is not None:
            waits.add(self._jb, now)
        return ReceiveStats(
            kind=self.kind,
            codec=self.codec,
            packets=self._packets,
            bytes=self._bytes,
            rtx_packets=self._rtx,
            late_packets=late,
            lost=lost,
            frames=self._frames,
            keyframes=self._keyframes,
            frames_dropped=dropped,
            nacks_sent=self._nacks_sent,
            nacked_packets=self._nacked,
            recovered_packets=self._nack.recovered,
            plis_sent=self._plis,
            sender_reports=self._srs,
            clock_source=self.clock.source(self.kind),
            keyframe_waits=waits.waits,
            keyframe_wait_time=waits.time,
            keyframe_wait_timeouts=waits.timeouts,
            frames_without_keyframe=waits.without_keyframe,
            loss_bursts=self._nack.bursts,
            nacks_throttled=self._nack.throttled,
            sender_repairs=self._sender_repairs(),
            hole_wait=self._hole_wait() if reorder is None else reorder.wait(now),
            clock_correction=self.clock.correction(self.kind),
            early_tail_nacks=self._nack.tail_guesses,
            nack_echoes=self._nack.echoes,
            late_repairs=self._nack.late_repairs,
            repairs_awaited=self._nack.awaited,
            reordered_packets=0 if reorder is None else reorder.reordered,
        )

    def close(self) -> None:
        """Stop timers and drop buffered packets (the receiver itself is aiortc's to stop)."""
        if self._closed:
            return
        self._closed = True
        self._leave_batch()
        for cb in tuple(self._close_callbacks):
            try:
                cb()
            except Exception:
                logger.exception("ReceivePipeline(%s): close callback failed", self.kind)
        self._close_callbacks.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._jb is not None:  # free buffered packets, keep the counters
            self._retired.add(self._jb, time.monotonic())
            self._dropped_extra += self._jb.frames_dropped
            self._late += self._jb.packets_late
            self._jb = None
        if self._reorder is not None:
            self._reorder.flush()  # dropped, as the video's held packets
        self._nack.reset()

    # -- setup ---------------------------------------------------------------------------
    def _learn(self, parameters: RTCRtpReceiveParameters) -> None:
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self._codecs[codec.payloadType] = codec
                if is_rtx(codec):
                    self._rtx_types.add(codec.payloadType)
                if any(fb.type == "nack" and not fb.parameter for fb in codec.rtcpFeedback):
                    self._nack_types.add(codec.payloadType)
        for encoding in parameters.encodings:
            if encoding.rtx is not None:
                self._rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        logger.debug(
            "ReceivePipeline(%s): codecs %s",
            self.kind,
            {pt: c.mimeType for pt, c in self._codecs.items()},
        )

    def _start_timer(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        # Audio's timer only gives up the holes its reorder buffer waits on (no NACK: not
        # negotiated for Opus; no PLI): asleep while nothing is held.
        if self._timer is None and not self._closed:
            self._timer = self._loop.create_task(self._run_timer())

    # -- RTCP ----------------------------------------------------------------------------
    async def _on_rtcp(self, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket) and self._ssrc in (None, packet.ssrc):
            # Before the first RTP packet the SSRC is unknown: the clock keeps the SR for later.
            if packet.ssrc == self._ssrc:
                self._srs += 1
                self._last_activity = time.monotonic()
            info = packet.sender_info
            self.clock.on_sender_report(
                self.kind, packet.ssrc, info.ntp_timestamp, info.rtp_timestamp
            )
        elif isinstance(packet, RtcpByePacket):
            logger.info("ReceivePipeline(%s): RTCP BYE from the sender", self.kind)
        assert self._orig_rtcp is not None
        await self._orig_rtcp(packet)

    async def _send_pli(self) -> None:
        if self._ssrc is None or self._receiver is None:
            return
        self._plis += 1
        logger.debug("ReceivePipeline(%s): PLI", self.kind)
        await seam.send_pli(self._receiver, self._ssrc)

    def _note_pli(self, now: float) -> None:
        """A PLI goes out now. Until a keyframe answers, the next one waits the backoff
        (``pli_retry`` doubling up to ``pli_retry_max``): a sender deaf to PLI is not flooded."""
        self._last_pli = now
        self._pli_pending = False
        self._pli_next = now + max(self._pli_interval, self._pli_backoff)
        self._pli_backoff = min(2 * self._pli_backoff, self._pli_retry_max)

    def _keyframe_arrived(self) -> None:
        self._pli_backoff = self._pli_retry
        self._pli_next = self._last_pli + self._pli_interval
        # A request made since is answered too (the timer asks again if the buffer still
        # wants a keyframe): else it went out anyway, for an extra keyframe.
        self._pli_pending = False

    def _request_pli(self) -> None:
        # No stream yet: nothing to ask (and no backoff to start); a stream that does not
        # open with a keyframe is asked for one when it comes.
        if self.kind != "video" or self._closed or self._ssrc is None:
            return
        now = time.monotonic()
        if now >= self._pli_next and self._loop is not None:
            self._note_pli(now)
            task = self._loop.create_task(self._send_pli())
            self._pli_tasks.add(task)
            task.add_done_callback(self._pli_tasks.discard)
        else:
            self._pli_pending = True  # the timer sends it when the interval has passed
            self._wake_timer()

    # -- RTP -----------------------------------------------------------------------------
    async def _on_rtp(self, packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        """aiortc's RTP handler (datagrams that did not take the fast path)."""
        for send in self._receive(packet, arrival_time_ms):
            await send

    def on_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """The fast path's handler (``datagram_batch``): feedback is sent in a task."""
        sends = self._receive(packet, arrival_time_ms)
        if sends:  # called on the loop, from the socket's datagram_received
            self._send_soon(sends)

    def _send_soon(self, sends: list[Coroutine[Any, Any, None]]) -> None:
        """Send RTCP feedback from synchronous code on the loop (in a task, in order)."""
        task = asyncio.get_running_loop().create_task(_send_all(sends))
        self._send_tasks.add(task)
        task.add_done_callback(self._send_tasks.discard)

    def on_path_back(self) -> None:
        """The transport received a datagram after a silence (``datagram_batch``). If this
        video stream was silent too, an outage is over: ask for its tail and a keyframe now,
        not when its own next packet comes (audio's next packet is due in 20 ms, video's next
        frame in up to 40)."""
        jb = self._jb
        if self.kind != "video" or jb is None or self._closed:
            return
        now = time.monotonic()
        if not self._nack_negotiated():
            if self._nack.silent(now):
                self._request_pli()
            return
        if not self._nack.guess_outage_tail(now):
            return
        self._request_pli()
        lost = self._nack.due(now, retries=False)
        logger.info("ReceivePipeline(video): path back; NACKing the %d newest packets", len(lost))
        if lost:  # (called on the loop, from datagram_batch)
            self._send_soon([self._send_nack(lost)])
        self._wake_timer()  # their retries

    def _receive(self, packet: RtpPacket, arrival_time_ms: int) -> list[Coroutine[Any, Any, None]]:
        """Handle one RTP packet; returns the RTCP feedback (REMB, NACK) to send, in order."""
        sends: list[Coroutine[Any, Any, None]] = []
        receiver = self._receiver
        if receiver is None or not seam.receiver_enabled(receiver) or self._closed:
            return sends
        now = self._last_activity = time.monotonic()
        self._packets += 1
        self._bytes += len(packet.payload)

        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return sends
        if self._remb is not None and packet.extensions.abs_send_time is not None:
            remb = self._remb.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            rtcp_ssrc = seam.receiver_rtcp_ssrc(receiver)
            if remb is not None and rtcp_ssrc is not None:
                sends.append(
                    seam.send_rtcp(
                        receiver,
                        RtcpPsfbPacket(
                            fmt=RTCP_PSFB_APP,
                            ssrc=rtcp_ssrc,
                            media_ssrc=0,
                            fci=pack_remb_fci(*remb),
                        ),
                    )
                )
        # RR statistics, as aiortc keeps them (per SSRC, RTX included).
        stream = self._remote_streams.get(packet.ssrc)
        if stream is None:
            stream = self._remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)

        retransmission = packet.payload_type in self._rtx_types
        if retransmission:
            unwrapped, media_codec = self._unwrap_rtx(packet, codec)
            if media_codec is None:
                return sends
            packet, codec = unwrapped, media_codec
            self._rtx += 1

        if packet.ssrc != self._ssrc or codec is not self._codec:
            self._reset_stream(packet.ssrc, codec)
        seq = self._seq(packet.sequence_number)

        if self.kind == "audio":
            self._on_audio(packet, seq, codec, now)
            return sends

        if self._jb is None:
            self._checking_start, self._start_timestamp = True, None
            self._jb = VideoJitterBuffer(
                codec.name,
                max_packets=self._max_packets,
                max_wait=self._max_wait,
                keyframe_wait=self._keyframe_wait,
            )
            self._adapt_wait(self._jb)
        jb = self._jb
        if not self._nack.on_packet(seq, now, retransmission=retransmission):
            self._request_pli()  # gap too large to NACK: a keyframe repairs it
            below = self._nack.unasked_below
            if below is not None:  # the head frame does not wait for what nobody asks for
                jb.abandon(below)
        confirmed = self._nack.take_confirmed_guess()  # an outage's tail asked for early
        if confirmed is not None:
            jb.abandon(confirmed)
        if not jb.insert(seq, packet.timestamp, bool(packet.marker), packet.payload, now):
            return sends
        if jb.take_key_arrival():
            # The sender answered: a damaged keyframe, re-asked for, is no reason to back off.
            self._keyframe_arrived()
        frames = jb.pop()
        if jb.hole_abandoned:  # it goes now, not at the timer's next tick (up to 50 ms away)
            jb.expire(now)  # (the PLI went out when the run was abandoned)
            frames += jb.pop()
        if self._checking_start and packet.payload:  # (padding-only packets carry no frame)
            self._ask_unless_the_stream_starts_with_a_keyframe(jb, packet.timestamp, frames)

        for frame in frames:
            self._emit_video(frame, codec, now)
        lost = self._nack.due(now, retries=False) if self._nack_negotiated() else []
        if lost:  # (retries go in the timer's batches)
            sends.append(self._send_nack(lost))
        if jb.take_pli_request():
            self._request_pli()
        if self._idle is not None and self._waits_on_time():
            self._wake_timer()
        return sends

    def _ask_unless_the_stream_starts_with_a_keyframe(
        self, jb: VideoJitterBuffer, timestamp: int, frames: list[AssembledFrame]
    ) -> None:
        """Joined mid-stream: aiortc waits for the sender's next periodic keyframe; we ask
        for one as soon as a packet of a later frame comes while no keyframe has been found.

        Not at the first packet: an H264 keyframe often opens with a STAP-A of SPS/PPS that
        does not say it is one (the IDR follows), and a PLI then costs a needless keyframe.
        """
        if frames or jb.floor is not None or not jb.waiting_for_keyframe:
            self._checking_start = False  # it started at a keyframe (or is released anyway)
        elif self._start_timestamp is None:
            self._start_timestamp = timestamp
        elif timestamp != self._start_timestamp:
            self._checking_start = False
            self._request_pli()

    def _unwrap_rtx(
        self, packet: RtpPacket, codec: RTCRtpCodecParameters
    ) -> tuple[RtpPacket, RTCRtpCodecParameters | None]:
        original_ssrc = self._rtx_ssrc.get(packet.ssrc, self._ssrc)
        apt = codec.parameters.get("apt")
        if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int):
            return packet, None
        media_codec = self._codecs.get(apt)
        if media_codec is None:
            return packet, None
        return unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc), media_codec

    def _reset_stream(self, ssrc: int, codec: RTCRtpCodecParameters) -> None:
        if self._reorder is not None:  # the old stream's held packets, before it is forgotten
            self._emit_audio(self._reorder.flush())
        if self._ssrc is not None:
            logger.info(
                "ReceivePipeline(%s): new stream ssrc=%d codec=%s", self.kind, ssrc, codec.name
            )
            self.clock.reset(self.kind)
        self._ssrc = ssrc
        self._codec = codec
        self._codec_name = codec.name
        if self._jb is not None:  # keep the counters of the previous stream
            self._retired.add(self._jb, time.monotonic())
            self._dropped_extra += self._jb.frames_dropped
            self._late += self._jb.packets_late
        self._seq = _Unwrapper(16)
        self._ts = _Unwrapper(32)
        self._jb = None
        self._nack.reset()

    def _on_audio(
        self, packet: RtpPacket, seq: int, codec: RTCRtpCodecParameters, now: float
    ) -> None:
        # Opus: one packet is one frame, released in sequence order (audio_reorder); what
        # came too late is dropped (the decoded stream fills gaps with silence, media.frames).
        reorder = self._reorder
        assert reorder is not None
        self._emit_audio(reorder.push(seq, (packet.payload, packet.timestamp, now), now))
        if reorder.waiting:
            self._wake_timer()

    def _emit_audio(self, packets: list[_AudioPacket]) -> None:
        codec = self._codec
        for payload, rtp32, arrival in packets:
            if payload and codec is not None:  # (each at its own arrival: the clock's transit)
                self._emit(payload, rtp32, True, codec, arrival)

    def _emit_video(self, frame: AssembledFrame, codec: RTCRtpCodecParameters, now: float) -> None:
        self._nack.forget_before(frame.last_seq + 1)
        data = frame.data
        if frame.keyframe and self._name(codec) == "H264":
            sprop = self._parameter_sets.get(codec.payloadType or -1) or codec.parameters.get(
                "sprop-parameter-sets"
            )
            if isinstance(sprop, str):
                # SPS/PPS given only in the SDP: without them neither the decoder nor a
                # copy-mode recording can start at this keyframe.
                data = h264.with_parameter_sets(data, sprop)
        self._emit(data, frame.rtp_timestamp, frame.keyframe, codec, now, frame.concealed)

    def _emit(
        self,
        data: bytes,
        rtp32: int,
        key: bool,
        codec: RTCRtpCodecParameters,
        now: float,
        concealed: bool = False,
    ) -> None:
        assert self._ssrc is not None
        rtp = self._ts(rtp32)
        pts, source = self.clock.map(self.kind, self._ssrc, rtp, codec.clockRate, now)
        frame = EncodedFrame(
            kind=self.kind,
            codec=self._name(codec),
            data=data,
            rtp_timestamp=rtp,
            clock_rate=codec.clockRate,
            keyframe=key,
            presentation_time=pts,
            clock_source=source,
            arrival_time=now,
            index=self._frames,
            concealed=concealed,
        )
        self._frames += 1
        if key and self.kind == "video":
            self._keyframes += 1
        for cb in tuple(self._subscribers):
            try:
                cb(frame)
            except Exception:
                logger.exception("ReceivePipeline(%s): subscriber failed", self.kind)

    def _name(self, codec: RTCRtpCodecParameters) -> str:
        return self._codec_name if codec is self._codec and self._codec_name else codec.name

    async def _send_nack(self, lost: list[int]) -> None:
        if self._ssrc is None or self._receiver is None:
            return
        self._nacks_sent += 1
        self._nacked += len(lost)
        await seam.send_nack(self._receiver, self._ssrc, [s & 0xFFFF for s in lost])

    # -- timer ---------------------------------------------------------------------------
    async def _run_timer(self) -> None:
        """Re-NACK, expire stalled frames, and re-PLI while no keyframe comes: every
        ``BUSY_TICK`` while something waits on time, else asleep until the packet path says
        something does (``IDLE_TICK`` at most)."""
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                if self._waits_on_time():
                    await asyncio.sleep(BUSY_TICK)
                else:
                    idle = self._idle = loop.create_future()
                    wake = loop.call_later(IDLE_TICK, _set_done, idle)
                    try:
                        await idle
                    finally:
                        wake.cancel()
                        self._idle = None
                    if idle.result():  # woken: tick a BUSY_TICK from now, as before
                        continue
                if self._closed:
                    break
                await self._tick(time.monotonic())
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("ReceivePipeline(%s): timer failed", self.kind)

    def _waits_on_time(self) -> bool:
        """Something the timer does is due at some time: a NACK retry, a hole's give-up, a
        PLI asked for (or repeated while a keyframe is wanted), concealment."""
        jb = self._jb
        return (
            self._nack.missing_count > 0
            or self._pli_pending
            or (jb is not None and jb.waits_on_time)
            or (self._reorder is not None and self._reorder.waiting)
        )

    def _wake_timer(self) -> None:
        idle = self._idle
        if idle is not None:
            self._idle = None
            _set_done(idle, True)

    def _nack_negotiated(self) -> bool:
        """The sender's answer offers generic NACK for the current codec (``a=rtcp-fb:PT
        nack``; GStreamer's webrtcbin answers only ``nack pli``): else NACKs are not sent."""
        codec = self._codec
        return codec is None or codec.payloadType in self._nack_types

    def _sender_repairs(self) -> bool:
        return self._nack_negotiated() and self._nack.sender_repairs

    def _hole_wait(self) -> float:
        if self._sender_repairs():
            return retransmit_wait(self._max_wait, self._nack.rtt)
        return min(self._max_wait, REORDER_WAIT)

    def _adapt_wait(self, jb: VideoJitterBuffer) -> None:
        wait = self._hole_wait()
        jb.max_wait = wait
        jb.conceal_at_once = not self._sender_repairs()
        self._nack.max_age = wait  # retries stop where the jitter buffer gives up

    async def _tick(self, now: float) -> None:
        if self._reorder is not None:
            self._emit_audio(self._reorder.expire(now))
        jb = self._jb
        if jb is not None:
            self._adapt_wait(jb)
            if jb.expire(now):
                self._request_pli()
            if jb.floor is not None:
                self._nack.forget_before(jb.floor)
            codec = self._codec
            if codec is not None:
                for frame in jb.pop():
                    self._emit_video(frame, codec, now)
            if jb.wants_keyframe and self._ssrc is not None and now >= self._pli_next:
                self._pli_pending = True  # repeated, with backoff, until a keyframe comes
        lost = self._nack.due(now) if self._nack_negotiated() else []
        if lost:
            await self._send_nack(lost)
        if self._pli_pending and now >= self._pli_next:
            self._note_pli(now)
            await self._send_pli()


def retransmit_wait(base: float, rtt: float | None) -> float:
    """How long a hole is waited for, ``base`` at least: a NACK, one retry and the
    retransmission (three round trips) plus a frame interval of slack, up to
    ``MAX_RETRANSMIT_WAIT``. On a round trip too long for that (10 % loss and 200 ms each way:
    ~0.4 s), the answer to one retry (its echo, the retry ``RETRY_RTTS`` round trips later,
    the round trip, slack) if it can come within ``MAX_ONE_RETRY_WAIT``: a keyframe asked for
    instead comes a round trip after the give-up, and at the loss that needs retries one of
    its many packets needs a repair as well (measured: a second-long freeze each time, and the
    retransmissions came after the give-up)."""
    if rtt is None:
        return base
    two_retries = 3 * rtt + RETRANSMIT_SLACK
    one_retry = NACK_ECHO_AFTER + (1 + RETRY_RTTS) * rtt + RETRANSMIT_SLACK
    if two_retries <= MAX_RETRANSMIT_WAIT:
        wait = two_retries
    elif one_retry <= MAX_ONE_RETRY_WAIT:
        wait = max(MAX_RETRANSMIT_WAIT, one_retry)
    else:
        wait = MAX_RETRANSMIT_WAIT
    return max(base, wait)


def _set_done(future: asyncio.Future[bool], woken: bool = False) -> None:
    if not future.done():
        future.set_result(woken)


async def _send_all(sends: list[Coroutine[Any, Any, None]]) -> None:
    for i, send in enumerate(sends):
        try:
            await send
        except ConnectionError:  # the transport closed: the rest cannot go either
            for rest in sends[i + 1 :]:
                rest.close()
            return
        except Exception:
            logger.exception("ReceivePipeline: sending RTCP feedback failed")


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
