"""A minimal WHEP *sender* built on aiortc, for connection tests (loopback only).

POST /whep answers with a sendonly aiortc peer connection sending aiortc's synthetic
VideoStreamTrack + AudioStreamTrack; DELETE /whep/res/{id} closes it. Host candidates are
pinned to 127.0.0.1 through the project's own ``multi_turn.install``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import av
from aiohttp import web
from aioice.ice import CandidatePair
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import multi_turn
from avatar_rtc.rtc.sdp_candidates import SDPFRAG_TYPE, build_sdpfrag

from .answer_shapes import Shape, candidate_lines, without_candidates

PostHook = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
Address = tuple[str, int]


@dataclass
class SenderCounters:
    posts: int = 0
    deletes: int = 0
    patches: int = 0
    offers: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


class SizedVideoTrack(VideoStreamTrack):
    """aiortc's synthetic video (a grey picture) at ``size`` instead of 640x480."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=self.size[0], height=self.size[1], format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


class AiortcWhepSender:
    """``async with AiortcWhepSender() as s: s.url`` — one pc per POST."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        before_post: PostHook | None = None,
        counter_offer: bool = False,
        answer_shape: Shape | None = None,
        trickle: bool = False,
        avoid: Callable[[], Address | None] | None = None,
    ) -> None:
        """``counter_offer=True``: answer every POST with 406 + our own offer (WHEP -03+),
        and expect the client's answer in a PATCH.

        ``answer_shape`` rewrites the answer's candidates (see ``answer_shapes``).
        ``trickle=True``: the answer carries no candidate; they are returned (sdpfrag) in
        the 200 of the client's trickle PATCH, which must match the ETag (If-Match).
        ``video_size``: the video's size for the connections made from then on (``None``:
        aiortc's 640x480); change it, then :meth:`drop_all`, and a reconnect gets the new one.

        ``avoid``: once ICE completed, send to another of the client's candidates than the
        address ``avoid()`` returns (the one the client nominated), as a peer with aggressive
        nomination may; ``switched_to`` then says where. (The client's relay must let the
        sender in: a TURN permission for its address.)"""
        self.host = host
        self.counter_offer = counter_offer
        self.answer_shape = answer_shape
        self.trickle = trickle
        self.trickled: list[str] = []  # sdpfrag bodies the client PATCHed
        self.video_size: tuple[int, int] | None = None
        self.avoid = avoid
        self.switched_to: Address | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters = SenderCounters()
        self.before_post = before_post
        self._pcs: dict[str, RTCPeerConnection] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> AiortcWhepSender:
        app = web.Application()
        app.router.add_post("/whep", self._post)
        app.router.add_delete("/whep/res/{rid}", self._delete)
        app.router.add_patch("/whep/res/{rid}", self._patch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{port}/whep"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(pc.close() for pc in self._pcs.values()))
        self._pcs.clear()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def active(self) -> int:
        return len(self._pcs)

    def sending_to(self) -> set[Address]:
        """The client candidates the peer connections send their media to (nominated pairs)."""
        return {
            pair.remote_addr
            for pc in self._pcs.values()
            for pair in seam.nominated_pairs(seam.ice_connection(pc.getTransceivers()[0])).values()
        }

    async def drop_all(self) -> None:
        """Close every peer connection from our side (the viewers see DTLS closed)."""
        pcs, self._pcs = list(self._pcs.values()), {}
        await asyncio.gather(*(pc.close() for pc in pcs))

    async def _post(self, request: web.Request) -> web.StreamResponse:
        self.counters.posts += 1
        self.counters.auth.append(request.headers.get("Authorization"))
        if self.before_post is not None:
            early = await self.before_post(request)
            if early is not None:
                return early
        offer = await request.text()
        self.counters.offers.append(offer)
        if self.counter_offer:
            return await self._send_counter_offer()
        pc = RTCPeerConnection()
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        # The transceivers (and their ICE gatherer) now exist: pin loopback before gathering.
        self._pin_loopback(pc)
        size = self.video_size
        pc.addTrack(VideoStreamTrack() if size is None else SizedVideoTrack(size))
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        if self.answer_shape is not None:
            answer = self.answer_shape(answer)
        if self.trickle:
            answer = without_candidates(answer)
        if self.avoid is not None:
            task = asyncio.create_task(self._send_elsewhere(pc, self.avoid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._new_resource(pc, 201, answer)

    async def _send_elsewhere(
        self, pc: RTCPeerConnection, avoid: Callable[[], Address | None]
    ) -> None:
        """Point the sender's nominated pair at another client candidate than ``avoid()``,
        and keep it there for a few seconds (a later check would otherwise move it back).
        A test double's liberty with aioice's private state: only here."""
        connection = seam.ice_connection(pc.getTransceivers()[0])
        nominated = seam.nominated_pairs(connection)
        chosen = None
        for _ in range(600):  # 3 s
            await asyncio.sleep(0.005)
            excluded = avoid()
            if chosen is None and excluded is not None and 1 in nominated:
                others = [
                    candidate
                    for candidate in connection._remote_candidates
                    if candidate.component == 1 and (candidate.host, candidate.port) != excluded
                ]
                if others:
                    chosen = CandidatePair(nominated[1].protocol, others[0])
                    self.switched_to = chosen.remote_addr
            if chosen is not None and nominated.get(1) is not chosen:
                nominated[1] = chosen

    def _new_resource(
        self, pc: RTCPeerConnection, status: int, sdp: str | None = None
    ) -> web.Response:
        """Keep ``pc`` as a new WHEP resource; answer with its SDP and Location."""
        rid = str(next(self._ids))
        self._pcs[rid] = pc
        headers = {"Location": f"/whep/res/{rid}"}  # relative on purpose
        if self.trickle:
            headers.update({"Accept-Patch": SDPFRAG_TYPE, "ETag": f'"{rid}-1"'})
        return web.Response(
            status=status,
            text=sdp if sdp is not None else pc.localDescription.sdp,
            content_type="application/sdp",
            headers=headers,
        )

    def _pin_loopback(self, pc: RTCPeerConnection) -> None:
        multi_turn.install(
            seam.ice_connection(pc.getTransceivers()[0]),
            servers=[],
            host_addresses=[self.host],
            ssl_context=None,
            relay_grace=0.3,
            gather_timeout=5.0,
        )

    async def _send_counter_offer(self) -> web.StreamResponse:
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        self._pin_loopback(pc)
        await pc.setLocalDescription(await pc.createOffer())
        return self._new_resource(pc, 406)

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        self.counters.patches += 1
        pc = self._pcs.get(request.match_info["rid"])
        if pc is None:
            return web.Response(status=404)
        if request.content_type == SDPFRAG_TYPE:
            return await self._trickled(request, pc)
        answer = await request.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return web.Response(status=204)

    async def _trickled(self, request: web.Request, pc: RTCPeerConnection) -> web.Response:
        if not self.trickle:
            return web.Response(status=405)
        if request.headers.get("If-Match") != f'"{request.match_info["rid"]}-1"':
            return web.Response(status=412)
        self.trickled.append(await request.text())
        first = pc.getTransceivers()[0]
        ours = [line[len("a=candidate:") :] for line in candidate_lines(pc.localDescription.sdp)]
        ufrag, pwd = (
            pc.localDescription.sdp.split("a=ice-ufrag:")[1].split()[0],
            (pc.localDescription.sdp.split("a=ice-pwd:")[1].split()[0]),
        )
        body = build_sdpfrag(
            ice_ufrag=ufrag, ice_pwd=pwd, mid=first.mid or "0", candidates=ours, end=True
        )
        return web.Response(status=200, text=body, content_type=SDPFRAG_TYPE)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        self.counters.deletes += 1
        pc = self._pcs.pop(request.match_info["rid"], None)
        if pc is None:
            return web.Response(status=404)
        await pc.close()
        return web.Response(status=200)
