"""The one module that touches private names of aiortc and aioice.

aiortc 1.16 and aioice 0.13 offer no public hook for what this client needs:

- the ICE connection of a transport, to gather from every TURN URL (``multi_turn``) and to
  report the selected pair;
- the gathering and pairing state that an ``aioice.Connection`` subclass must keep in step,
  and the agent state an ICE restart in place starts afresh (aioice has no ICE restart);
- an RTP receiver's packet handlers, statistics and RTCP feedback, so our receive pipeline
  replaces aiortc's jitter buffer and decoder (``receiver``);
- a sender's SSRC and its DTLS transport's plain-RTP send, for the emulator's RTP tap;
- a DTLS transport's SRTP session, RTP router, header-extension map and receive counters, so
  ``datagram_batch`` can unprotect and route RTP without aiortc's per-datagram task hop;
- the TURN client protocol behind a relay candidate's transport, whose UDP socket
  ``datagram_batch`` drains too (media from the service always comes through its relay).

Every private name used is listed in :data:`PRIVATE_NAMES`; :func:`missing_private_names`
checks them against the installed versions on real objects, and a test runs it, so an upgrade
that renames one fails loudly instead of silently dropping, say, REMB feedback.
Tested versions: :data:`TESTED_VERSIONS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aioice
from aioice import Candidate, Connection, turn
from aioice.utils import random_string
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import HeaderExtensionsMap

__all__ = [
    "PRIVATE_NAMES",
    "TESTED_VERSIONS",
    "RestartableConnection",
    "RtpHandler",
    "abs_send_time_id",
    "add_protocol",
    "cancel_consent_checks",
    "components",
    "count_received",
    "finish_gathering",
    "gathering_started",
    "handle_rtp_packet",
    "handshake_settled",
    "ice_connection",
    "intercept_outgoing_rtp",
    "missing_private_names",
    "nominated_pairs",
    "on_keyframe_request",
    "on_retransmit_request",
    "protocols",
    "queued_datagrams",
    "receiver_enabled",
    "receiver_rtcp_ssrc",
    "receiver_statistics",
    "relay_only",
    "release_receiver",
    "restart_ice_agent",
    "restore_outgoing_rtp",
    "route_rtp",
    "send_nack",
    "send_pli",
    "send_rtcp",
    "sender_ssrc",
    "srtp_receive_session",
    "start_gathering",
    "swap_connection_class",
    "take_over_receiver",
    "transport_ice_connection",
    "turn_client",
    "use_ip_versions",
]

TESTED_VERSIONS = {"aiortc": ("1.16.0",), "aioice": ("0.13.0",)}

# (owner, attribute): owner is a class name, or "<x> instance" for attributes set in __init__.
PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("RTCIceGatherer instance", "_connection"),
    ("aioice.Connection instance", "_local_candidates_start"),
    ("aioice.Connection instance", "_local_candidates_end"),
    ("aioice.Connection instance", "_local_candidates"),
    ("aioice.Connection instance", "_components"),
    ("aioice.Connection instance", "_protocols"),
    ("aioice.Connection instance", "_nominated"),
    ("aioice.Connection instance", "_queue"),
    ("aioice.Connection instance", "_query_consent_task"),
    ("aioice.Connection instance", "_transport_policy"),
    ("aioice.Connection instance", "_use_ipv4"),
    ("aioice.Connection instance", "_use_ipv6"),
    ("aioice.Connection instance", "_local_username"),
    ("aioice.Connection instance", "_local_password"),
    ("aioice.Connection instance", "_check_list"),
    ("aioice.Connection instance", "_check_list_done"),
    ("aioice.Connection instance", "_check_list_state"),
    ("aioice.Connection instance", "_early_checks"),
    ("aioice.Connection instance", "_early_checks_done"),
    ("aioice.Connection instance", "_nominating"),
    ("aioice.Connection instance", "_remote_candidates"),
    ("aioice.Connection instance", "_remote_candidates_end"),
    ("aioice.Connection", "_check_list_maybe_complete"),
    ("RTCRtpReceiver", "_handle_rtp_packet"),
    ("RTCRtpReceiver", "_handle_rtcp_packet"),
    ("RTCRtpReceiver", "_send_rtcp"),
    ("RTCRtpReceiver", "_send_rtcp_pli"),
    ("RTCRtpReceiver", "_send_rtcp_nack"),
    ("RTCRtpReceiver instance", "_enabled"),
    ("RTCRtpReceiver instance", "_RTCRtpReceiver__remote_streams"),
    ("RTCRtpReceiver instance", "_RTCRtpReceiver__rtcp_ssrc"),
    ("RTCRtpSender instance", "_ssrc"),
    ("RTCRtpSender", "_send_keyframe"),
    ("RTCRtpSender", "_retransmit"),
    ("RTCDtlsTransport", "_send_rtp"),
    ("RTCDtlsTransport instance", "_rx_srtp"),
    ("RTCDtlsTransport instance", "_RTCDtlsTransport__handshake_done"),
    ("RTCDtlsTransport instance", "_rtp_router"),
    ("RTCDtlsTransport instance", "_rtp_header_extensions_map"),
    ("HeaderExtensionsMap instance", "_HeaderExtensionsMap__ids"),
    ("RTCDtlsTransport instance", "_RTCDtlsTransport__rx_packets"),
    ("RTCDtlsTransport instance", "_RTCDtlsTransport__rx_bytes"),
    ("aioice.TurnTransport instance", "_TurnTransport__inner_protocol"),
)

# --- aioice: the ICE connection behind a transceiver ---------------------------------------


def ice_connection(transceiver: RTCRtpTransceiver) -> Connection:
    """The ``aioice.Connection`` of ``transceiver``'s transport (shared when bundled)."""
    return transport_ice_connection(transceiver.receiver.transport)


def swap_connection_class(connection: Connection, cls: type[Connection]) -> None:
    """Make ``connection`` an instance of the ``Connection`` subclass ``cls``, in place.

    aiortc creates the connection itself; swapping the class keeps every reference it holds
    valid and affects this one connection only (no process-global patch).
    """
    if type(connection) is not Connection:
        raise TypeError(f"unexpected ICE connection type {type(connection)!r}")
    if not issubclass(cls, Connection):
        raise TypeError(f"{cls!r} is not an aioice.Connection")
    connection.__class__ = cls


def gathering_started(connection: Connection) -> bool:
    return bool(connection._local_candidates_start)


def start_gathering(connection: Connection) -> bool:
    """Mark gathering as started; False when it already was (then do nothing)."""
    if connection._local_candidates_start:
        return False
    connection._local_candidates_start = True
    return True


def finish_gathering(connection: Connection, candidates: Iterable[Candidate]) -> None:
    """Publish the gathered local candidates and mark gathering as complete."""
    connection._local_candidates += list(candidates)
    connection._local_candidates_end = True


def components(connection: Connection) -> list[int]:
    return sorted(connection._components)


def relay_only(connection: Connection) -> bool:
    return bool(connection._transport_policy == aioice.TransportPolicy.RELAY)


def use_ip_versions(connection: Connection) -> tuple[bool, bool]:
    """(IPv4, IPv6) as configured on the connection."""
    return bool(connection._use_ipv4), bool(connection._use_ipv6)


def protocols(connection: Connection) -> list[Any]:
    """The connection's own list of local ``StunProtocol``s (mutable: aioice reads it)."""
    found: list[Any] = connection._protocols
    return found


def add_protocol(connection: Connection, protocol: Any) -> None:
    connection._protocols.append(protocol)


def cancel_consent_checks(connection: Connection) -> None:
    """Cancel the consent-freshness task (RFC 7675) aioice starts as ``connect()`` ends.

    aioice starts it even when ``close()`` ran while ``connect()`` was finishing: it then
    outlives the connection, sending checks from closed sockets for half a minute.
    """
    task = connection._query_consent_task
    if task is not None:
        task.cancel()


def nominated_pairs(connection: Connection) -> dict[int, Any]:
    """Component -> nominated ``CandidatePair`` (empty before ICE completes)."""
    found: dict[int, Any] = connection._nominated
    return found


def queued_datagrams(connection: Connection) -> int:
    """Datagrams aioice received and aiortc's DTLS receive task has not taken yet."""
    queue: asyncio.Queue[Any] = connection._queue
    return queue.qsize()


def restart_ice_agent(connection: Connection, *, regather: bool) -> list[Any]:
    """Start an ICE restart (RFC 8445 section 9) in place, which aioice cannot do itself.

    New local credentials; the check list, the peer's credentials and candidates and the
    consent checks start afresh (set the peer's, then ``connect()`` runs the checks again).
    The nominated pair stays, so whatever still comes (and DTLS above it) flows until the new
    checks nominate another; :class:`RestartableConnection` keeps that stale pair from ending
    the new check list. ``regather``: the local candidates go too (gather again, on
    new sockets); their protocols are returned, detached from the connection: close them once
    a new pair is nominated (closing the nominated pair's socket first would end ``recv``).
    Otherwise they are kept and ``[]`` is returned.
    """
    cancel_consent_checks(connection)
    connection._query_consent_task = None
    for pair in connection._check_list:
        if pair.task is not None:
            pair.task.cancel()
    connection._local_username = random_string(4)
    connection._local_password = random_string(22)
    connection.remote_username = connection.remote_password = None
    connection._check_list = []
    connection._check_list_done = False
    connection._check_list_state = asyncio.Queue()
    connection._early_checks.clear()  # checks with the old credentials: answered 401 now
    connection._early_checks_done = False  # the peer's new checks wait for its credentials
    connection._nominating = set()
    connection._remote_candidates = []
    connection._remote_candidates_end = False
    if not regather:
        return []
    retired = list(connection._protocols)
    connection._protocols.clear()
    connection._local_candidates = []
    connection._local_candidates_start = connection._local_candidates_end = False
    return retired


class RestartableConnection(Connection):
    """An ``aioice.Connection`` whose check list, after :func:`restart_ice_agent`, completes
    only once every component has a pair nominated by the new checks: aioice completes it as
    soon as any component has a nominated pair, which the one from before would be."""

    def _check_list_maybe_complete(self) -> bool:
        stale = any(pair not in self._check_list for pair in self._nominated.values())
        return not stale and super()._check_list_maybe_complete()


# --- aiortc: taking over an RTP receiver ----------------------------------------------------

RtpHandler = Callable[..., Awaitable[None]]
_RECEIVER_OVERRIDES = ("receive", "stop", "_handle_rtp_packet", "_handle_rtcp_packet")


def take_over_receiver(
    receiver: RTCRtpReceiver,
    *,
    on_receive: Callable[[Any], Awaitable[None]],
    on_stop: Callable[[], Awaitable[None]],
    on_rtp: RtpHandler,
    on_rtcp: RtpHandler,
) -> tuple[Callable[[Any], Awaitable[None]], Callable[[], Awaitable[None]], RtpHandler]:
    """Route ``receiver``'s packets to our handlers, on this instance only.

    aiortc's DTLS transport looks ``_handle_rtp_packet``/``_handle_rtcp_packet`` up on the
    receiver for every routed packet, so instance attributes see every packet and aiortc's own
    jitter buffer and decoder never do. Returns aiortc's ``receive``, ``stop`` and RTCP
    handler, for the caller to chain to.
    """
    receiver_statistics(receiver)  # fail before changing anything
    r: Any = receiver
    originals = (r.receive, r.stop, r._handle_rtcp_packet)
    r.receive = on_receive
    r.stop = on_stop
    r._handle_rtp_packet = on_rtp
    r._handle_rtcp_packet = on_rtcp
    return originals


def release_receiver(receiver: RTCRtpReceiver) -> None:
    """Give ``receiver`` aiortc's own handlers back (undoes :func:`take_over_receiver`)."""
    for name in _RECEIVER_OVERRIDES:
        receiver.__dict__.pop(name, None)


def receiver_statistics(receiver: RTCRtpReceiver) -> dict[int, StreamStatistics]:
    """The per-SSRC statistics dict aiortc's receiver reports are built from (we fill it)."""
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
    if not isinstance(streams, dict):
        raise RuntimeError("unsupported aiortc version: receiver statistics not found")
    return streams


def receiver_rtcp_ssrc(receiver: RTCRtpReceiver) -> int | None:
    ssrc: int | None = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", None)
    return ssrc


def receiver_enabled(receiver: RTCRtpReceiver) -> bool:
    return bool(receiver._enabled)


async def send_rtcp(receiver: RTCRtpReceiver, packet: Any) -> None:
    await receiver._send_rtcp(packet)


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    await receiver._send_rtcp_pli(media_ssrc)


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    await receiver._send_rtcp_nack(media_ssrc, lost)


# --- aiortc: a DTLS transport's SRTP receive path (datagram_batch) -------------------------


def transport_ice_connection(dtls: RTCDtlsTransport) -> Connection:
    """The ``aioice.Connection`` under a DTLS transport."""
    connection: Connection = dtls.transport.iceGatherer._connection
    return connection


def srtp_receive_session(dtls: RTCDtlsTransport) -> Any:
    """The ``pylibsrtp.Session`` that unprotects received SRTP; ``None`` before the handshake."""
    return dtls._rx_srtp


def handshake_settled(dtls: RTCDtlsTransport) -> bool:
    """No DTLS retransmission timer left: aiortc's receive task then reads aioice's queue
    directly (with one, through ``asyncio.wait_for``: a datagram it took is handled an
    event-loop iteration later)."""
    settled: bool = dtls._RTCDtlsTransport__handshake_done  # type: ignore[attr-defined]
    return settled


def abs_send_time_id(dtls: RTCDtlsTransport) -> int | None:
    """The negotiated id of the abs-send-time header extension (None: not negotiated)."""
    extensions: Any = dtls._rtp_header_extensions_map
    ids: Any = extensions._HeaderExtensionsMap__ids
    value = ids.abs_send_time
    return value if isinstance(value, int) else None


def route_rtp(dtls: RTCDtlsTransport, packet: Any) -> RTCRtpReceiver | None:
    """The receiver aiortc's RTP router gives ``packet`` to (SSRC, payload type, MID)."""
    receiver: Any = dtls._rtp_router.route_rtp(packet)
    return receiver if isinstance(receiver, RTCRtpReceiver) else None


def count_received(dtls: RTCDtlsTransport, packets: int, octets: int) -> None:
    """Add datagrams received past aiortc's own loop to its transport statistics."""
    t: Any = dtls
    t._RTCDtlsTransport__rx_packets += packets
    t._RTCDtlsTransport__rx_bytes += octets


def turn_client(transport: Any) -> Any:
    """The TURN client protocol (aioice ``TurnClientUdpProtocol`` or its TCP twin) behind a
    relay candidate's ``TurnTransport``; None for any other transport."""
    if isinstance(transport, turn.TurnTransport):
        return transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]
    return None


def handle_rtp_packet(receiver: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> Any:
    """The coroutine of ``receiver``'s own RTP handler (ours, when taken over)."""
    return receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)


# --- aiortc: the sending side (emulator) ----------------------------------------------------

SendRtp = Callable[[bytes], Awaitable[None]]


def sender_ssrc(sender: RTCRtpSender) -> int:
    ssrc: int = sender._ssrc
    return ssrc


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback()`` instead of the sender's own encoder when a PLI/FIR arrives."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def on_retransmit_request(sender: RTCRtpSender, callback: Callable[[int], Awaitable[None]]) -> None:
    """Await ``callback(sequence_number)`` for each packet a NACK names, instead of the
    sender's own history lookup (for RTP sent past the sender, which keeps no history of it)."""
    sender._retransmit = callback  # type: ignore[method-assign, assignment]


def intercept_outgoing_rtp(transport: Any, wrap: Callable[[SendRtp], SendRtp]) -> None:
    """Intercept the plain (pre-SRTP) RTP/RTCP a DTLS transport sends, on this instance.

    aiortc's senders look ``transport._send_rtp`` up on every packet.
    """
    transport._send_rtp = wrap(transport._send_rtp)


def restore_outgoing_rtp(transport: Any) -> None:
    transport.__dict__.pop("_send_rtp", None)


# --- the check ----------------------------------------------------------------------------


async def missing_private_names() -> list[str]:
    """Every entry of :data:`PRIVATE_NAMES` the installed aiortc/aioice lack (on real objects)."""
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        owners: dict[str, object] = {
            "RTCIceGatherer instance": gatherer,
            "aioice.Connection instance": getattr(gatherer, "_connection", None),
            "aioice.Connection": Connection,
            "RTCRtpReceiver": RTCRtpReceiver,
            "RTCRtpReceiver instance": transceiver.receiver,
            "RTCRtpSender instance": transceiver.sender,
            "RTCRtpSender": RTCRtpSender,
            "RTCDtlsTransport": RTCDtlsTransport,
            "RTCDtlsTransport instance": transceiver.receiver.transport,
            "aioice.TurnTransport instance": turn.TurnTransport(None),  # type: ignore[arg-type]
            "HeaderExtensionsMap instance": HeaderExtensionsMap(),
        }
        return [
            f"{owner}.{name}" for owner, name in PRIVATE_NAMES if not hasattr(owners[owner], name)
        ]
    finally:
        await pc.close()
