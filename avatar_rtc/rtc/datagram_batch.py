"""SRTP receive fast path: every ready datagram per wake-up, straight to our RTP handlers.

aiortc receives one datagram per event-loop iteration and hops each through aioice's
``asyncio.Queue`` into the DTLS transport's receive task (a STUN parse attempt, a queue put and
get, a task wake-up and four coroutine frames per packet) before it unprotects it. For the
receivers our pipelines took over, this module does it in the socket's ``datagram_received``:

- an SRTP RTP datagram (first byte 128..191, not RTCP) once the DTLS handshake has set up the
  SRTP session is unprotected, parsed (``rtp_parse``: of the header extensions only
  abs-send-time), routed by aiortc's own router and handed to the pipeline's synchronous
  handler at once;
- then every further datagram already queued in the socket is read (non-blocking, at most
  ``MAX_BATCH``) and dispatched the same way, so a burst costs one wake-up of the event loop,
  not one per packet. For a relay candidate (TURN over UDP, the service's only path) the
  socket drained is the one to the TURN server: ChannelData is unwrapped here (the channel's
  peer from aioice's own table), anything else (STUN: responses, Data indications) goes to
  aioice's TURN client as if its socket had read it. TURN over TCP/TLS is a byte stream: one
  wake-up per read, as before;
- a wake-up dispatches for ``MAX_BATCH_SECONDS`` at most; the socket stays readable, so the
  loop comes back for the rest after one iteration. An outage's retransmitted tail comes as
  one long burst, and a frame a decoder thread hands back meanwhile waits for the loop: without
  the cap, for the whole burst (the first frame after a 2 s outage came 15.9 ms after the
  network, median of 6 runs; with it 8.4 ms);
- with a ``read_interval`` (``SessionOptions.read_interval``), a socket just drained is not
  watched by the event loop until the next tick of its loop's :class:`~.read_pacer.ReadPacer`,
  which drains it then (every datagram queued, no time cap): one wake-up per interval for all
  sessions on the loop instead of one per packet burst of each. Only once SRTP media came in
  that wake-up: connecting (ICE checks, the DTLS handshake) is never delayed. Not over uvloop
  (its UDP transports cannot pause reading): there, every datagram as above;
- anything else (STUN, DTLS, SRTCP, a datagram before the handshake) takes aioice's and
  aiortc's own path unchanged, as does RTP routed to a receiver that is not ours, and SRTP
  too until aioice's queue was found empty once (we attach after the handshake: what came
  before is still there, and must not be overtaken);
- the first datagram after ``PATH_SILENCE`` seconds without any (an outage is over) is told
  to every handler's ``on_path_back`` once its batch is dispatched: a video stream whose own
  next packet is still up to a frame interval away can ask for what it lost at once. Sooner
  over UDP TURN: during the silence :class:`~.silence_probe.SilenceProbe` probes the TURN
  server, and its first answer after ``MIN_UNANSWERED`` or more unanswered ones tells the
  handlers (once a silence).

One :class:`DatagramBatch` per DTLS transport (bundled: audio and video share it), installed by
:func:`attach` and removed with the last handler (:meth:`DatagramBatch.remove`). The private
names of aiortc/aioice involved are reached through ``aiortc_seam``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpReceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket, is_rtcp

from . import aiortc_seam as seam
from .read_pacer import ReadPacer, pacer_for
from .rtp_parse import parse_rtp
from .silence_probe import SilenceProbe

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_SECONDS",
    "DatagramBatch",
    "RtpCallback",
    "attach",
    "sockets_changed",
]

logger = logging.getLogger(__name__)

MAX_BATCH = 64  # datagrams read per wake-up beyond the first: other sockets get their turn
MAX_BATCH_SECONDS = 0.002  # of dispatching per wake-up (see the module docstring)
MAX_PACED = 4096  # datagrams a paced read takes at most: past that the loop watches the socket
# Receive buffer of a socket a pacer holds (the kernel caps it at net.core.rmem_max): a 300 kB
# keyframe burst lost 23 of 255 datagrams in aioice's 256 kB between two 0.1 s ticks.
PACED_RCVBUF = 4 * 1024 * 1024
RECV_SIZE = 65536
PATH_SILENCE = 0.25  # seconds without a datagram that make the next one an outage's end
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)

RtpCallback = Callable[[RtpPacket, int], None]  # (packet, arrival time in ms): must not block
Datagram = Callable[[bytes, Any], None]
PathBack = Callable[[], None]  # must not block

_BATCHES: weakref.WeakKeyDictionary[RTCDtlsTransport, DatagramBatch] = weakref.WeakKeyDictionary()


def attach(
    receiver: RTCRtpReceiver,
    callback: RtpCallback,
    *,
    on_path_back: PathBack | None = None,
    read_interval: float = 0.0,
) -> DatagramBatch:
    """Hand ``receiver``'s RTP to ``callback`` through its transport's fast path
    (``read_interval``: see the module docstring; the transport's first receiver sets it)."""
    dtls = receiver.transport
    batch = _BATCHES.get(dtls)
    if batch is None or batch.closed:
        batch = _BATCHES[dtls] = DatagramBatch(dtls, read_interval=read_interval)
    batch.add(receiver, callback, on_path_back=on_path_back)
    return batch


def sockets_changed(dtls: RTCDtlsTransport) -> None:
    """The ICE connection under ``dtls`` has new sockets (an ICE restart gathered again): the
    fast path takes them too, and lets go of closed ones it no longer holds."""
    batch = _BATCHES.get(dtls)
    if batch is not None and not batch.closed:
        batch.rehook()


class _Socket:
    """One hooked protocol: its own ``datagram_received`` and, over UDP, a dup of the socket
    its datagrams come from, to drain (closed on removal, or as soon as the transport that owns
    the socket closes). ``turn``: the TURN client protocol when that socket is the one to the
    TURN server (its datagrams are ChannelData or STUN, not ours as they are)."""

    __slots__ = ("first_hop", "grown", "original", "owner", "protocol", "sock", "turn")

    def __init__(self, protocol: Any, original: Datagram) -> None:
        self.protocol = protocol
        self.original = original
        self.turn: Any = seam.turn_client(getattr(protocol, "transport", None))
        # the transport that reads the socket: the protocol's, or the TURN client's
        self.owner: Any = getattr(protocol if self.turn is None else self.turn, "transport", None)
        self.sock = _drainable(self.owner)
        self.first_hop = _first_hop(self.turn, self.owner, self.sock)
        self.grown = False  # its receive buffer, for paced reads

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class DatagramBatch:
    """The fast path of one DTLS transport; see the module docstring."""

    def __init__(self, dtls: RTCDtlsTransport, *, read_interval: float = 0.0) -> None:
        # Weak: the registry is weak on the transport, and the hooks live as long as it does.
        self._dtls = weakref.ref(dtls)
        self._callbacks: dict[RTCRtpReceiver, RtpCallback] = {}
        self._path_back: dict[RTCRtpReceiver, PathBack] = {}
        self._last_wakeup: float | None = None
        self._sockets: list[_Socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False
        self._probe = SilenceProbe(self._probe_says_back, silence=PATH_SILENCE)
        self._told_at: float | None = None  # when the probe told the path was back
        self._pacer: ReadPacer | None = pacer_for(read_interval) if read_interval > 0 else None
        self._in_order = False  # SRTP may take the fast path: see _order_kept
        self.closed = False
        # counters (tests, diagnostics)
        self.wakeups = 0
        self.paced_reads = 0  # a pacer's ticks that found datagrams queued
        self.datagrams = 0
        self.fast_packets = 0
        self.unprotect_errors = 0
        for protocol in seam.protocols(seam.transport_ice_connection(dtls)):
            self._hook(protocol)

    @property
    def drained_sockets(self) -> int:
        """How many sockets are drained per wake-up (host UDP, or a UDP TURN server's)."""
        return sum(hooked.sock is not None for hooked in self._sockets)

    def add(
        self,
        receiver: RTCRtpReceiver,
        callback: RtpCallback,
        *,
        on_path_back: PathBack | None = None,
    ) -> None:
        self._callbacks[receiver] = callback
        if on_path_back is not None:
            self._path_back[receiver] = on_path_back

    def remove(self, receiver: RTCRtpReceiver) -> None:
        """Stop handling ``receiver``; the last one gives the sockets their own path back."""
        self._callbacks.pop(receiver, None)
        self._path_back.pop(receiver, None)
        if not self._callbacks and not self.closed:
            self.closed = True
            dtls = self._dtls()
            if dtls is not None and _BATCHES.get(dtls) is self:
                del _BATCHES[dtls]
            for hooked in self._sockets:
                hooked.protocol.__dict__.pop("datagram_received", None)
                self._unpace(hooked, resume=True)
                hooked.close()
            self._sockets.clear()
            self._probe.close()

    @property
    def probe(self) -> SilenceProbe:
        """The silences' prober (its counters: ``probes``, ``paths_back``)."""
        return self._probe

    @property
    def first_hops(self) -> list[tuple[str, int]]:
        """What a silence's probe probes: the TURN server of each UDP TURN socket hooked."""
        return [hooked.first_hop for hooked in self._sockets if hooked.first_hop is not None]

    def rehook(self) -> None:
        """Hook the connection's protocols not hooked yet; forget the closed ones it dropped."""
        dtls = self._dtls()
        if dtls is None:
            return
        current = seam.protocols(seam.transport_ice_connection(dtls))
        held = {id(p) for p in current}
        for hooked in [h for h in self._sockets if id(h.protocol) not in held]:
            if hooked.owner is None or hooked.owner.is_closing():
                self._unpace(hooked, resume=False)
                hooked.close()
                self._sockets.remove(hooked)
        known = {id(h.protocol) for h in self._sockets}
        for protocol in current:
            if id(protocol) not in known:
                self._hook(protocol)

    # -- hooks ---------------------------------------------------------------------------
    def _hook(self, protocol: Any) -> None:
        original: Datagram = protocol.datagram_received
        hooked = _Socket(protocol, original)

        def datagram_received(data: bytes, addr: Any) -> None:
            self._wakeup(hooked, data, addr)

        protocol.datagram_received = datagram_received
        self._sockets.append(hooked)

    def _wakeup(self, hooked: _Socket, data: bytes, addr: Any) -> None:
        if self._draining:  # a TURN Data indication our drain gave aioice, handed back
            self._count(*self._dispatch(hooked, data, addr))
            return
        self.wakeups += 1
        now = time.monotonic()
        last, self._last_wakeup = self._last_wakeup, now
        received, octets = self._dispatch(hooked, data, addr)
        self._close_released()
        _, n, size = self._drain(hooked, MAX_BATCH, now + MAX_BATCH_SECONDS)
        received += n
        self._count(received, octets + size)
        if last is not None and now - last >= PATH_SILENCE:
            told = self._told_at
            if told is None or told < last:  # (the probe told during this silence: done)
                self._path_is_back()
        self._probe.datagram(now, hooked.first_hop if self._path_back else None)
        if received:  # media flows (not the ICE checks and the DTLS handshake: never delayed)
            self._pace(hooked)

    def _close_released(self) -> None:
        """Close our dups of the sockets aioice closed (a released TURN allocation's, the one an
        ICE restart replaced): theirs never wake again, and the port must not stay bound."""
        for each in self._sockets:
            if each.sock is not None and each.owner.is_closing():
                self._unpace(each, resume=False)
                each.close()

    def _drain(self, hooked: _Socket, most: int, until: float | None) -> tuple[int, int, int]:
        """Read and dispatch what ``hooked``'s socket has queued, up to ``most`` datagrams or
        the time ``until``: (datagrams read, of them the fast path's, their octets)."""
        read = received = octets = 0
        self._draining = True
        try:
            for _ in range(most):
                sock = hooked.sock  # None once removed, maybe by a handler just called
                if sock is None or (until is not None and time.monotonic() >= until):
                    break
                try:
                    data, addr = sock.recvfrom(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    (hooked.turn or hooked.protocol).error_received(exc)
                    break
                read += 1
                if hooked.turn is not None:
                    payload, addr = _from_turn(hooked.turn, data, addr)
                    if payload is None:
                        continue
                    data = payload
                n, size = self._dispatch(hooked, data, addr)
                received += n
                octets += size
        finally:
            self._draining = False
        return read, received, octets

    # -- paced reading (read_pacer) -------------------------------------------------------
    def _pace(self, hooked: _Socket) -> None:
        """Leave ``hooked``'s socket to the pacer until a tick finds it empty."""
        pacer, owner = self._pacer, hooked.owner
        if pacer is None or hooked.sock is None or self.closed or owner.is_closing():
            return
        pause = getattr(owner, "pause_reading", None)  # (uvloop's UDP transports have none)
        if pause is None:
            return
        if not hooked.grown:
            hooked.grown = True
            _grow_receive_buffer(hooked.sock)
        pause()
        pacer.hold(hooked, lambda: self._paced_read(hooked), owner.resume_reading)

    def _paced_read(self, hooked: _Socket) -> int | None:
        """A pacer's tick: every datagram queued. None: the socket is gone (not resumed)."""
        self._close_released()  # (while media flows, the loop's wake-ups no longer do it)
        if hooked.sock is None or self.closed:
            return None
        read, received, octets = self._drain(hooked, MAX_PACED, None)
        self._count(received, octets)
        if read:
            self.paced_reads += 1
            now = self._last_wakeup = time.monotonic()
            self._probe.datagram(now, hooked.first_hop if self._path_back else None)
        return 0 if read >= MAX_PACED else read  # a flood: the loop watches the socket again

    def _unpace(self, hooked: _Socket, *, resume: bool) -> None:
        held = self._pacer is not None and self._pacer.release(hooked)
        if held and resume and not hooked.owner.is_closing():
            hooked.owner.resume_reading()

    def _probe_says_back(self) -> None:
        """Before the datagram that ends the silence, which then tells nobody."""
        self._told_at = time.monotonic()
        self._path_is_back()

    def _path_is_back(self) -> None:
        for path_back in list(self._path_back.values()):
            try:
                path_back()
            except Exception:
                logger.exception("path-back handler failed")

    def _count(self, received: int, octets: int) -> None:
        dtls = self._dtls()
        if received and dtls is not None:
            seam.count_received(dtls, received, octets)

    def _dispatch(self, hooked: _Socket, data: bytes, addr: Any) -> tuple[int, int]:
        """One datagram; (1, its size) when the fast path took it, else (0, 0)."""
        self.datagrams += 1
        dtls = self._dtls()
        srtp = None
        if dtls is not None and data and 127 < data[0] < 192 and not is_rtcp(data):
            srtp = seam.srtp_receive_session(dtls)  # None until the DTLS handshake is done
        if srtp is None or dtls is None or not self._order_kept(dtls):
            hooked.original(data, addr)  # aiortc counts what goes its own way
            return 0, 0
        # aiortc.clock.current_ms() (ms since 1900) without its datetime arithmetic
        arrival_ms = int((time.time() + NTP_UNIX_OFFSET) * 1000)
        try:
            packet = parse_rtp(srtp.unprotect(data), seam.abs_send_time_id(dtls))
        except pylibsrtp.Error:
            self.unprotect_errors += 1  # replayed or forged: aiortc drops them silently too
            return 1, len(data)
        except ValueError:
            return 1, len(data)
        receiver = seam.route_rtp(dtls, packet)
        if receiver is None:
            return 1, len(data)
        callback = self._callbacks.get(receiver)
        if callback is not None:
            self.fast_packets += 1
            try:
                callback(packet, arrival_ms)
            except Exception:
                logger.exception("RTP handler failed")
        else:  # not one of ours: its own (async) handler
            task = asyncio.ensure_future(seam.handle_rtp_packet(receiver, packet, arrival_ms))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return 1, len(data)

    def _order_kept(self, dtls: RTCDtlsTransport) -> bool:
        """Whether the fast path keeps the packets in order: not while aioice's queue holds
        datagrams for aiortc's receive task, the way they went before we were attached (after
        the DTLS handshake). Passing them, a keyframe's first packet (SPS and PPS) came after
        the rest of it: an IDR alone, a decode error and a PLI (12 sessions of 64 starting at
        once with paced reads, 3 without). Once the queue is empty, nothing SRTP goes there.
        (Nor while the handshake keeps a retransmission timer: aiortc's task then takes a
        datagram an event-loop iteration before it handles it.)"""
        if not self._in_order:
            queued = seam.queued_datagrams(seam.transport_ice_connection(dtls))
            self._in_order = queued == 0 and seam.handshake_settled(dtls)
        return self._in_order


def _from_turn(client: Any, data: bytes, addr: Any) -> tuple[bytes | None, Any]:
    """A datagram read from the TURN server's socket: ChannelData's payload and the channel's
    peer (None when the channel is not bound: dropped, as aioice does); anything else is handed
    to aioice's TURN client (which passes a Data indication's payload back to the relay's
    protocol) and answers None."""
    if len(data) >= 4 and 0x40 <= data[0] < 0x80:  # ChannelData: channel numbers 0x4000-0x7FFF
        length = (data[2] << 8) | data[3]
        peer = client.channel_to_peer.get((data[0] << 8) | data[1])
        if peer is None or len(data) < length + 4:
            return None, None
        return data[4 : 4 + length], peer
    client.datagram_received(data, addr)
    return None, None


def _first_hop(turn: Any, owner: Any, sock: socket.socket | None) -> tuple[str, int] | None:
    """What to probe in a silence: the TURN server, over UDP (the peer its socket sends to);
    None for any other socket."""
    if turn is None or sock is None:
        return None
    peer = owner.get_extra_info("peername")
    return (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None


def _grow_receive_buffer(sock: socket.socket) -> None:
    """At least ``PACED_RCVBUF`` (as far as net.core.rmem_max allows; never smaller)."""
    with contextlib.suppress(OSError):
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < PACED_RCVBUF:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PACED_RCVBUF)


def _drainable(transport: Any) -> socket.socket | None:
    """A non-blocking dup of the transport's UDP socket (None over TCP/TLS)."""
    if transport is None:  # not an isinstance check: uvloop's transports are not BaseTransports
        return None
    trsock = transport.get_extra_info("socket")
    if trsock is None or trsock.type != socket.SOCK_DGRAM:
        return None
    with contextlib.suppress(OSError, AttributeError):
        sock: socket.socket = trsock.dup()
        sock.setblocking(False)
        return sock
    return None
