"""MediaConnection: a recvonly aiortc peer connection brought up over WHEP.

``connect()`` = build the pc (max-bundle, our ICE servers only) → recvonly video + audio
→ ``on_receiver`` hooks → offer → gather (all TURN URLs, see ``multi_turn``) → refuse a
candidate-less offer → POST (WHEP) → answer, with every candidate of its BUNDLE group
(``sdp_candidates``) → trickle by PATCH when the server takes it → wait for ICE + DTLS.
``connect_timeout`` bounds the whole of it. Every exit path after the POST (error, timeout,
cancellation, ``close()``) DELETEs the WHEP resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from ..errors import (
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    NoCandidatesError,
    WhepError,
)
from ..redact import Secret, install_log_redaction, redact, redact_exception
from . import aiortc_seam as seam
from . import codec_negotiation, datagram_batch, ice_restart, multi_turn, sdp_candidates
from .candidate_pair import SelectedPair
from .encoded_frame import MediaKind
from .ice_options import IceOptions
from .ice_servers import IceServer
from .video_codecs import RECEIVABLE_VIDEO_CODECS
from .whep import WhepClient

__all__ = ["ConnectTimings", "ConnectionState", "MediaConnection", "add_rtcp_mux_only"]

logger = logging.getLogger(__name__)

# Closing is best effort and must not outlast a dead network: the WHEP DELETE and the peer
# connection's close (aioice deallocates each TURN allocation in turn, 63 s apiece when the
# server does not answer) each get this long; the close then goes on in the background.
CLOSE_STEP_TIMEOUT = 5.0
_closing_in_background: set[asyncio.Future[None]] = set()

# aioice/aiortc loggers exist now (imported above): make sure the secret filter covers them
# (aioice.turn logs STUN USERNAME attributes at DEBUG).
install_log_redaction()

ConnectionState = Literal[
    "new", "gathering", "signaling", "connecting", "connected", "failed", "closed"
]
ReceiverHook = Callable[[RTCRtpReceiver, MediaKind], None]


@dataclass
class ConnectTimings:
    """``time.monotonic()`` stamps of the connect steps (``None`` until reached)."""

    started: float | None = None
    offer_created: float | None = None
    gathering_done: float | None = None
    answer_received: float | None = None
    ice_connected: float | None = None
    dtls_connected: float | None = None

    def durations(self) -> dict[str, float]:
        """Seconds from ``started`` to each step reached."""
        if self.started is None:
            return {}
        steps = ("offer_created", "gathering_done", "answer_received", "ice_connected",
                 "dtls_connected")  # fmt: skip
        return {
            name: stamp - self.started
            for name in steps
            if (stamp := getattr(self, name)) is not None
        }

    @property
    def time_to_connected(self) -> float | None:
        if self.started is None or self.dtls_connected is None:
            return None
        return self.dtls_connected - self.started


class MediaConnection:
    """One receive-only WebRTC session with a WHEP endpoint (async context manager).

    ``on_receiver(receiver, kind)`` is called for the video then the audio receiver before
    the answer is applied, so a receive pipeline can take over RTP handling from the start.
    ``on_state_change(state)`` is called on every :attr:`state` change.
    ``on_remote_description(sdp)`` gets the server's SDP once applied (answer or counter-offer).
    ``release_receivers``: give the receivers aiortc's own handlers back before the peer
    connection closes (ours, or the peer's DTLS close), so whatever ``on_receiver`` attached
    outlives this connection (a reconnect moves it to the next one, see ``reconnect``).
    A DTLS close or failure reported by the peer makes :attr:`state` ``closed``/``failed``
    (aiortc's own connection state ignores a peer's DTLS close).
    """

    def __init__(
        self,
        whep_url: str,
        *,
        bearer: str | Secret | None = None,
        ice: IceOptions | None = None,
        video_codecs: Sequence[str] = RECEIVABLE_VIDEO_CODECS,
        connect_timeout: float = 20.0,
        http: aiohttp.ClientSession | None = None,
        on_receiver: ReceiverHook | None = None,
        on_state_change: Callable[[ConnectionState], None] | None = None,
        on_remote_description: Callable[[str], None] | None = None,
        http_timeout: float = 15.0,
        release_receivers: bool = False,
        cross_origin_auth: bool = False,
    ) -> None:
        self.whep_url = whep_url
        self.ice = ice if ice is not None else IceOptions()
        self.video_codecs = tuple(video_codecs)
        self.connect_timeout = connect_timeout
        self.timings = ConnectTimings()
        self.on_state_change = on_state_change
        self._on_receiver = on_receiver
        self._on_remote_description = on_remote_description
        self._release_receivers = release_receivers
        self._whep = WhepClient(
            whep_url,
            bearer=bearer,
            session=http,
            timeout=http_timeout,
            cross_origin_auth=cross_origin_auth,
        )
        self._pc: RTCPeerConnection | None = None
        self._ice_connection: multi_turn.MultiTurnConnection | None = None
        self._state: ConnectionState = "new"
        self._stage = "new"
        self._connected = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._trickle_task: asyncio.Future[None] | None = None
        self._restarting = asyncio.Lock()  # one ICE restart at a time

    # --- public API -----------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def pc(self) -> RTCPeerConnection | None:
        """The underlying aiortc peer connection (``None`` before ``connect``)."""
        return self._pc

    @property
    def whep(self) -> WhepClient:
        return self._whep

    @property
    def link_ice_servers(self) -> tuple[IceServer, ...]:
        """ICE servers the WHEP server announced (``Link`` headers); see ``whep`` module."""
        return self._whep.ice_servers

    @property
    def gather_report(self) -> multi_turn.GatherReport | None:
        return self._ice_connection.gather_report if self._ice_connection else None

    def selected_pair(self) -> SelectedPair | None:
        """The nominated candidate pair, once ICE completed."""
        return self._ice_connection.selected_pair() if self._ice_connection else None

    async def connect(self) -> None:
        """Bring the connection up; raises ``ConnectError`` subclasses or ``WhepError``s."""
        if self._state != "new":
            raise ConnectError(f"connect() called in state {self._state!r}")
        self.timings.started = time.monotonic()
        try:
            async with asyncio.timeout(self.connect_timeout) as deadline:
                await self._connect()
        except TimeoutError as exc:
            await self._abort()
            if deadline.expired():
                raise ConnectTimeoutError(self._timeout_message()) from None
            raise ConnectError(f"connect failed while {self._stage}: {exc}") from exc
        except BaseException:
            # Includes cancellation: the WHEP resource must not outlive us.
            await self._abort()
            raise

    @property
    def can_restart_ice(self) -> bool:
        """Connected to a WHEP server that takes PATCH (``Accept-Patch`` with the sdpfrag type)."""
        return self._state == "connected" and self._whep.accepts_trickle

    async def restart_ice(self) -> bool:
        """ICE restart through WHEP PATCH: this peer connection, its DTLS session and receivers
        carry on over a newly checked path (see ``ice_restart``), candidates gathered again.

        Returns True once ICE nominated the new path (media may take a round trip more), False
        when it cannot be tried (not connected, no ``Accept-Patch``) or the server does not
        restart ICE (405/422/501): then only a new connection brings media back. Raises
        ``WhepNotFoundError`` (the resource is gone), ``WhepError``/``TransportError`` for
        other HTTP failures, ``ConnectError`` when the new checks fail. After a refusal or an
        error our agent holds credentials the server does not: its consent checks to us fail
        within ~30 s, so replace the connection (``Reconnector`` does, in the same attempt).
        """
        async with self._restarting:
            return await self._restart_ice()

    async def _restart_ice(self) -> bool:
        ice, pc = self._ice_connection, self._pc
        if ice is None or pc is None or not self.can_restart_ice:
            return False
        transceiver = next(t for t in pc.getTransceivers() if t.mid is not None)
        assert transceiver.mid is not None
        dtls = transceiver.receiver.transport
        offer, before = await ice_restart.offer(ice, transceiver.mid)
        datagram_batch.sockets_changed(dtls)  # the new sockets' media takes the fast path too
        reply = await self._whep.restart_ice(offer)
        if reply is None:
            return False
        try:
            await ice_restart.complete(ice, sdp_candidates.parse_sdpfrag(reply), before)
        except (ConnectionError, ValueError) as exc:
            raise ConnectError(f"ICE restart failed: {exc}") from None
        pair = self.selected_pair()
        logger.info("ICE restarted: media via %s", pair.describe() if pair else "?")
        return True

    async def close(self, *, pc_wait: float = CLOSE_STEP_TIMEOUT) -> None:
        """DELETE the WHEP resource (best-effort) and close the peer connection. Idempotent.

        ``pc_wait``: seconds the peer connection's close is waited for, then it goes on in the
        background (the first call's value counts). A reconnect needs only the DELETE done
        and passes 0: over a path that went dead, aioice deallocates each TURN allocation
        unanswered, and the new connection waited that out (5 s with UDP blocked).
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(pc_wait))
        await asyncio.shield(self._closing)

    async def __aenter__(self) -> MediaConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- connect steps --------------------------------------------------------------

    async def _connect(self) -> None:
        self._set_state("gathering")
        self._stage = "gathering candidates"
        pc = self._pc = self._build_pc()
        offer = await pc.createOffer()
        self.timings.offer_created = time.monotonic()
        await pc.setLocalDescription(offer)
        self.timings.gathering_done = time.monotonic()
        local = pc.localDescription.sdp
        if "\na=candidate:" not in local:
            raise NoCandidatesError(self._no_candidates_message())

        self._set_state("signaling")
        self._stage = "waiting for the WHEP answer"
        try:
            response = await self._whep.offer(add_rtcp_mux_only(local))
        except WhepError as exc:
            codec_negotiation.raise_if_refused(self.video_codecs, exc)
            raise
        self.timings.answer_received = time.monotonic()
        self._set_state("connecting")
        self._stage = "connecting (ICE/DTLS)"
        if response.counter_offer:
            await self._answer_counter_offer(response.sdp)
        else:
            await self._apply_answer(response.sdp)
        await self._connected.wait()
        assert self._pc is not None
        if self._pc.connectionState != "connected":
            raise ConnectError(f"ICE/DTLS {self._pc.connectionState}: {self._ice_details()}")
        self._set_state("connected")
        pair = self.selected_pair()
        logger.info(
            "media connected in %.0f ms via %s",
            (self.timings.time_to_connected or 0.0) * 1000,
            pair.describe() if pair else "?",
        )

    async def _apply_answer(self, answer: str) -> None:
        """Apply the WHEP answer with every candidate of its BUNDLE group (see
        ``sdp_candidates``), then trickle when the server takes it."""
        assert self._pc is not None
        found = sdp_candidates.normalize_answer(answer)
        logger.info(
            "WHEP answer: %d candidate(s), %d UDP, in m= section(s) %s%s%s",
            len(found.candidates),
            len(found.udp),
            ",".join(found.bundled_mids) or "-",
            ", end-of-candidates" if found.end_of_candidates else "",
            ", ice-lite" if found.ice_lite else "",
        )
        codec_negotiation.check_answer(self.video_codecs, found.sdp)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(found.sdp, "answer"))
        except Exception as exc:
            codec_negotiation.raise_if_rejected(self.video_codecs, found.sdp, exc)
            raise ConnectError(f"aiortc refused the WHEP answer: {redact(repr(exc))}") from (
                redact_exception(exc)
            )
        self._remote_applied(found.sdp)
        self._open_permissions(found.unpairable)
        if self._whep.accepts_trickle:
            self._trickle_task = asyncio.ensure_future(self._trickle())

    async def _trickle(self) -> None:
        """Send our candidates by WHEP PATCH; add the server's, if its response has any."""
        pc = self._pc
        assert pc is not None
        fragment = sdp_candidates.local_sdpfrag(pc.localDescription.sdp)
        if fragment is None:
            return
        try:
            reply = await self._whep.trickle(fragment)
        except (WhepError, ConnectError) as exc:
            logger.info("trickling candidates failed: %s", exc)
            return
        if reply is None or pc is not self._pc:
            return
        remote = sdp_candidates.parse_sdpfrag(reply)
        values = remote.all_candidates()
        unpairable = sdp_candidates.unpairable_addresses(values)
        mid = next((t.mid for t in pc.getTransceivers() if t.mid is not None), None)
        logger.info("WHEP server trickled %d candidate(s)", len(values))
        for value in values:
            candidate = candidate_from_sdp(value)
            candidate.sdpMid = mid
            with contextlib.suppress(ValueError):  # after end-of-candidates: nothing to add
                await pc.addIceCandidate(candidate)
        self._open_permissions(unpairable)
        if remote.end_of_candidates and len(unpairable) < len(values):
            with contextlib.suppress(ValueError):
                await pc.addIceCandidate(None)

    def _remote_applied(self, sdp: str) -> None:
        if self._on_remote_description is not None:
            self._on_remote_description(sdp)

    def _open_permissions(self, addresses: Sequence[tuple[str, int]]) -> None:
        if addresses and self._ice_connection is not None:
            self._ice_connection.open_permissions(addresses)

    async def _answer_counter_offer(self, server_offer: str) -> None:
        """406 + SDP: aiortc cannot roll back our offer, so a fresh pc answers it."""
        logger.info("WHEP server sent a counter-offer; answering it on a new peer connection")
        assert self._pc is not None
        first = self._pc
        # The new pc first: on_receiver moves whatever is attached to its receivers before the
        # first pc's receivers are stopped.
        pc = self._pc = self._build_pc()
        await first.close()
        self._connected.clear()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(server_offer, "offer"))
        except Exception as exc:
            codec_negotiation.raise_if_rejected(self.video_codecs, server_offer, exc)
            raise ConnectError(f"aiortc refused the WHEP counter-offer: {redact(repr(exc))}") from (
                redact_exception(exc)
            )
        self._remote_applied(server_offer)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        local = pc.localDescription.sdp
        if "\na=candidate:" not in local:
            raise NoCandidatesError(self._no_candidates_message())
        await self._whep.patch_answer(add_rtcp_mux_only(local))

    def _build_pc(self) -> RTCPeerConnection:
        policy = (
            RTCIceTransportPolicy.RELAY
            if self.ice.policy == "relay"
            else (RTCIceTransportPolicy.ALL)
        )
        # iceServers=[]: aiortc would add a public STUN server for None, and uses only the
        # first TURN URL anyway; our MultiTurnConnection gets the real list below.
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[], iceTransportPolicy=policy, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
        video = pc.addTransceiver("video", direction="recvonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        self._set_codec_preferences(video)
        assert audio.receiver.transport is video.receiver.transport, "max-bundle expected"
        self._ice_connection = multi_turn.install(
            seam.ice_connection(video),
            servers=self.ice.servers(),
            host_addresses=self.ice.host_addresses,
            # Loading the CA store costs 35-90 ms on the event loop: only for turns: URLs.
            ssl_context=self.ice.ssl_context() if self.ice.uses_tls() else None,
            relay_grace=self.ice.relay_grace,
            gather_timeout=self.ice.gather_timeout,
        )

        @pc.on("iceconnectionstatechange")
        def _on_ice() -> None:
            if pc.iceConnectionState == "completed" and self.timings.ice_connected is None:
                self.timings.ice_connected = time.monotonic()

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc is not self._pc:
                return
            state = pc.connectionState
            if state == "connected" and self.timings.dtls_connected is None:
                self.timings.dtls_connected = time.monotonic()
            if state in ("connected", "failed", "closed"):
                self._connected.set()
            if self._state == "connected" and state in ("failed", "closed"):
                self._set_state("failed" if state == "failed" else "closed")

        dtls = video.receiver.transport

        @dtls.on("statechange")
        def _on_dtls_state() -> None:
            # The peer closed DTLS (or it failed): aiortc then closes the pc, stopping the
            # receivers; release them first (synchronously: the close is a task).
            if dtls.state not in ("closed", "failed") or pc is not self._pc:
                return
            self._release(pc)
            if self._state == "connected":
                self._set_state("failed" if dtls.state == "failed" else "closed")

        if self._on_receiver is not None:
            self._on_receiver(video.receiver, "video")
            self._on_receiver(audio.receiver, "audio")
        return pc

    def _set_codec_preferences(self, transceiver: RTCRtpTransceiver) -> None:
        video_caps = RTCRtpReceiver.getCapabilities("video")
        capabilities = video_caps.codecs if video_caps is not None else []
        wanted = [name.lower() for name in self.video_codecs]
        preferred = sorted(
            (c for c in capabilities if c.mimeType.split("/")[1].lower() in wanted),
            key=lambda c: wanted.index(c.mimeType.split("/")[1].lower()),
        )
        if not preferred:
            raise ConfigurationError(f"none of the video codecs {self.video_codecs} is supported")
        # RTX follows the codecs it repairs (aiortc pairs them by apt).
        rtx = [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
        transceiver.setCodecPreferences(preferred + rtx)

    # --- teardown -------------------------------------------------------------------

    async def _abort(self) -> None:
        """Failure/cancellation cleanup; survives a second cancellation (shielded)."""
        with contextlib.suppress(asyncio.CancelledError):
            await self.close()
        if self._state != "closed":
            self._set_state("failed")

    async def _close(self, pc_wait: float) -> None:
        was = self._state
        if self._trickle_task is not None and not self._trickle_task.done():
            self._trickle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._trickle_task
        try:
            async with asyncio.timeout(CLOSE_STEP_TIMEOUT):
                await self._whep.delete()
        except TimeoutError:
            logger.warning("WHEP DELETE not answered within %g s: given up", CLOSE_STEP_TIMEOUT)
        except Exception:  # best-effort: never mask the caller's error
            logger.warning("WHEP DELETE failed", exc_info=True)
        if self._pc is not None:
            self._release(self._pc)
            await _close_within(self._pc, pc_wait)
        await self._whep.aclose()
        self._connected.set()
        if was != "new" or self._pc is not None:
            self._set_state("closed")
        else:
            self._state = "closed"

    def _release(self, pc: RTCPeerConnection) -> None:
        """See ``release_receivers``: closing ``pc`` must not stop what is attached to them."""
        if self._release_receivers:
            for transceiver in pc.getTransceivers():
                seam.release_receiver(transceiver.receiver)

    def _set_state(self, state: ConnectionState) -> None:
        if state == self._state or self._state == "closed":
            return
        logger.debug("MediaConnection %s -> %s", self._state, state)
        self._state = state
        if self.on_state_change is not None:
            try:
                self.on_state_change(state)
            except Exception:
                logger.exception("on_state_change callback failed")

    # --- messages -------------------------------------------------------------------

    def _no_candidates_message(self) -> str:
        report = self.gather_report
        detail = report.summary() if report else "?"
        if self.ice.policy == "relay":
            hint = "relay policy needs a reachable TURN server with valid credentials"
        else:
            hint = "no usable interface/STUN/TURN"
        return f"ICE gathering produced no candidate ({hint}): {detail}"

    def _ice_details(self) -> str:
        report = self.gather_report
        return f"gathering: {report.summary()}" if report else "no gathering report"

    def _timeout_message(self) -> str:
        return (
            f"media connection not established within {self.connect_timeout:.1f} s "
            f"(while {self._stage}; {self._ice_details()})"
        )


def add_rtcp_mux_only(sdp: str) -> str:
    """Add ``a=rtcp-mux-only`` after each ``a=rtcp-mux`` (WHEP requires it with max-bundle;
    aiortc never writes it)."""
    if "a=rtcp-mux-only" in sdp:
        return sdp
    out: list[str] = []
    for line in sdp.split("\r\n"):
        out.append(line)
        if line == "a=rtcp-mux":
            out.append("a=rtcp-mux-only")
    return "\r\n".join(out)


async def _close_within(pc: RTCPeerConnection, seconds: float) -> None:
    """``pc.close()``, waited for ``seconds`` at most (then it finishes in the background)."""
    closing = asyncio.ensure_future(pc.close())
    try:
        if seconds > 0:
            done, _ = await asyncio.wait([closing], timeout=seconds)
            if not done:
                logger.info("the peer connection is still closing after %g s: left to finish",
                            seconds)  # fmt: skip
    finally:  # (also when our caller is cancelled meanwhile: the close goes on, tracked)
        if not closing.done():
            _closing_in_background.add(closing)
        closing.add_done_callback(_closed)


def _closed(task: asyncio.Future[None]) -> None:
    _closing_in_background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.debug("closing the peer connection failed", exc_info=task.exception())
