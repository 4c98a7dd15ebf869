"""Viewer: one WHEP viewer's peer connection, fed by the session's shared packet tracks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)

from avatar_rtc.emulator.media.encoder import AUDIO_CLOCK, VIDEO_CLOCK
from avatar_rtc.emulator.media.options import VideoCodec
from avatar_rtc.emulator.media.rtp_tap import RtpTap
from avatar_rtc.emulator.media.timeline import MediaKind
from avatar_rtc.emulator.media.tracks import PacketTrack
from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import ice_restart, multi_turn
from avatar_rtc.rtc.sdp_candidates import SdpFragment

logger = logging.getLogger(__name__)


class ViewerError(Exception):
    """Base of the errors that map onto WHEP statuses."""

    status = 400


class MediaClosedError(ViewerError):
    status = 404


class ViewerLimitError(ViewerError):
    status = 409


class NegotiationError(ViewerError):
    status = 400


class NotConnectedError(ViewerError):
    status = 409


class IceRestartUnsupportedError(ViewerError):
    status = 422


FrameSentHook = Callable[[MediaKind, int, int, int], None]  # kind, pts, rtp ts, clock rate


def _as_dtls_server(offer_sdp: str) -> str:
    """The offer as we apply it, so that we answer ``a=setup:passive`` as the service does
    (its egress is the DTLS server, ``shared/docs/kaltura-avatar-api.md`` §2.5): aiortc,
    answering ``actpass``, would take the client's role, and the client would play the
    server's, which it never does against the service. An offer that says ``active`` gets
    ``passive``. (Payload types are the offer's, as RFC 3264 asks and browsers need: the
    service's 109/111 are a browser's numbers.)"""
    return offer_sdp.replace("a=setup:actpass", "a=setup:active")


def _codec_preferences(kind: str, mime: str) -> list[RTCRtpCodecCapability]:
    """The sender's capabilities restricted to ``mime`` (+ RTX for video)."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in caps if c.mimeType.lower() in (mime.lower(), "video/rtx")]


class Viewer:
    def __init__(
        self,
        resource_id: str,
        *,
        video: PacketTrack,
        audio: PacketTrack,
        video_codec: VideoCodec,
        on_keyframe_request: Callable[[], None],
        on_frame_sent: FrameSentHook,
        on_closed: Callable[[Viewer], None],
        configuration: RTCConfiguration | None = None,
        connect_timeout: float = 30.0,
        host_addresses: Sequence[str] | None = None,
        capture_time: Callable[[float], float] | None = None,
    ) -> None:
        self.resource_id = resource_id
        self.video = video
        self.audio = audio
        self.video_codec = video_codec
        self.answer_sdp: str | None = None
        self.tap = RtpTap(self._frame_sent, self._rtp_now)
        self._on_keyframe_request = on_keyframe_request
        self._on_frame_sent = on_frame_sent
        self._on_closed = on_closed
        # No STUN/TURN on the emulator side: host candidates are all a local client needs.
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self._connect_timeout = connect_timeout
        self._host_addresses = host_addresses
        self._capture_time = capture_time
        self._watchdog: asyncio.Task[None] | None = None
        self._ice_checks: asyncio.Task[None] | None = None
        self._closed = False
        self.pli_count = 0
        self.ice_restarts = 0

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the viewer's offer; returns the answer SDP with all candidates (non-trickle)."""
        pc = self.pc
        try:
            media = sdp.SessionDescription.parse(offer_sdp).media
        except Exception as exc:  # aiortc's parser raises assorted errors on garbage
            raise NegotiationError(f"cannot parse offer: {exc}") from exc
        if any(not 0 <= c.port <= 65535 for m in media for c in m.ice_candidates):
            # aiortc takes any number; aioice's sendto() to it would fail on every check.
            raise NegotiationError("offer has a candidate whose port is out of range")
        offered = {m.kind for m in media}
        self._check_video_codec(media)
        # Our own sendonly transceivers with codec preferences must exist before the offer is
        # applied: aiortc picks the codec while setting the remote description. Only for the
        # kinds offered: aiortc cannot answer with a transceiver the offer did not mention.
        transceivers: list[tuple[RTCRtpTransceiver, MediaKind]] = []
        if "video" in offered:
            video_tr = pc.addTransceiver(self.video, direction="sendonly")
            video_tr.setCodecPreferences(_codec_preferences("video", f"video/{self.video_codec}"))
            # PLI/FIR from the viewer go to the shared encoder (the sender never encodes here).
            seam.on_keyframe_request(video_tr.sender, self._keyframe_requested)
            transceivers.append((video_tr, "video"))
        if "audio" in offered:
            audio_tr = pc.addTransceiver(self.audio, direction="sendonly")
            audio_tr.setCodecPreferences(_codec_preferences("audio", "audio/opus"))
            transceivers.append((audio_tr, "audio"))
        if not transceivers:
            raise NegotiationError("offer has no audio or video section")
        try:
            offer = RTCSessionDescription(sdp=_as_dtls_server(offer_sdp), type="offer")
            await pc.setRemoteDescription(offer)
            if self._host_addresses is not None:
                self._pin_host_addresses([tr for tr, _ in transceivers])
            await pc.setLocalDescription(await pc.createAnswer())  # waits for ICE gathering
        except Exception as exc:  # aiortc raises ValueError/OperationError/... on bad offers
            raise NegotiationError(f"cannot apply offer: {exc}") from exc
        for tr, kind in transceivers:
            if tr.mid is not None:
                self.tap.watch(seam.sender_ssrc(tr.sender), kind)
                self.tap.install(tr.sender.transport)
        pc.on("connectionstatechange", self._state_changed)
        self._watchdog = asyncio.ensure_future(self._watch_connect())
        self.answer_sdp = str(pc.localDescription.sdp)
        return self.answer_sdp

    async def restart_ice(self, fragment: SdpFragment) -> str:
        """ICE restart asked by the viewer (WHEP PATCH): the answer sdpfrag (our new credentials
        and candidates); the checks run on in the background, media goes on once they nominate
        a pair. ``NegotiationError`` for a fragment without credentials or UDP candidates."""
        transceiver = next((t for t in self.pc.getTransceivers() if t.mid is not None), None)
        ice = seam.ice_connection(transceiver) if transceiver is not None else None
        if transceiver is None or transceiver.mid is None or self._closed:
            raise MediaClosedError("this viewer is not connected")
        if self.pc.connectionState != "connected":
            raise NotConnectedError("this viewer is not connected yet")
        if not isinstance(ice, multi_turn.MultiTurnConnection):  # host addresses not pinned
            raise IceRestartUnsupportedError("this viewer's ICE agent cannot restart")
        if self._ice_checks is not None:
            self._ice_checks.cancel()  # a restart's checks still running: this one replaces it
        try:
            answer, self._ice_checks = await ice_restart.answer(ice, fragment, transceiver.mid)
        except ValueError as exc:
            raise NegotiationError(str(exc)) from None
        self._ice_checks.add_done_callback(self._ice_checks_done)
        self.ice_restarts += 1
        return answer

    def _ice_checks_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.info("viewer %s: ICE restart failed: %s", self.resource_id, task.exception())

    def _check_video_codec(self, media: list[sdp.MediaDescription]) -> None:
        # Like the service, the avatar sends one codec only: name both sides when it is missing.
        for section in media:
            if section.kind != "video":
                continue
            names = [c.mimeType.split("/")[1].upper() for c in section.rtp.codecs]
            if self.video_codec not in names:
                listed = "/".join(dict.fromkeys(n for n in names if n != "RTX")) or "none"
                raise NegotiationError(
                    f"no common video codec: the offer has {listed}, "
                    f"this avatar sends {self.video_codec} only"
                )

    def _pin_host_addresses(self, transceivers: list[RTCRtpTransceiver]) -> None:
        # Gathering starts in setLocalDescription; swap each ICE connection before that.
        pinned: set[int] = set()
        for tr in transceivers:
            connection = seam.ice_connection(tr)
            if id(connection) not in pinned:
                pinned.add(id(connection))
                multi_turn.install(
                    connection,
                    servers=[],
                    host_addresses=self._host_addresses,
                    ssl_context=None,
                    relay_grace=0.0,
                    gather_timeout=5.0,
                )

    def _keyframe_requested(self) -> None:
        self.pli_count += 1
        self._on_keyframe_request()

    def _frame_sent(self, kind: MediaKind, rtp_timestamp: int, ssrc: int) -> None:
        track = self.video if kind == "video" else self.audio
        if track.last_pts is not None:
            clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
            self._on_frame_sent(kind, track.last_pts, rtp_timestamp, clock)

    def _rtp_now(self, kind: MediaKind, last_rtp: int, now: float) -> int | None:
        """The RTP timestamp of ``now`` (monotonic) on the media clock, for sender reports."""
        track = self.video if kind == "video" else self.audio
        if self._capture_time is None or track.last_pts is None:
            return None
        rate = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        captured = self._capture_time(track.last_pts / rate)
        return last_rtp + round((now - captured) * rate)

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        logger.debug("viewer %s: connection %s", self.resource_id, state)
        if state in ("failed", "closed") and not self._closed:
            self._on_closed(self)

    async def _watch_connect(self) -> None:
        await asyncio.sleep(self._connect_timeout)
        if self.pc.connectionState not in ("connected", "closed"):
            logger.info(
                "viewer %s did not connect within %.0f s", self.resource_id, self._connect_timeout
            )
            self._on_closed(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._ice_checks is not None:
            self._ice_checks.cancel()
        self.video.stop()
        self.audio.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
            # aiortc race: a close() while DTLS completes stops the senders before its connect
            # task starts them, and their RTCP loops then run forever. Stopping again ends them.
            for sender in self.pc.getSenders():
                await sender.stop()
        self.tap.uninstall()
