"""WHEP routes of the emulator, as the avatar service answers them.

``POST /v1/whep/{session_id}`` with ``Content-Type: application/sdp``: 201 with the answer SDP
(non-trickle: aiortc gathers before answering, so it holds the candidates) and a relative
``Location: /v1/whep/{session_id}/{resource_id}``; 404 when the session is unknown or ended,
409 while the stream already has a viewer, 415 for any other content type, 400 for an offer
that cannot be applied. ``DELETE`` on the Location ends that viewer (204; 404 when unknown).
No Authorization is checked: the service does not ask for one on WHEP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from aiortc import RTCConfiguration

from avatar_rtc.emulator.control import WHEP_PREFIX
from avatar_rtc.emulator.media.viewer import Viewer, ViewerError

logger = logging.getLogger(__name__)


class WhepMedia(Protocol):
    """What WHEP needs of a session's media: ``AvatarMedia``, or the fan-out's ``FanoutMedia``."""

    closed: bool

    async def connect_viewer(
        self, offer_sdp: str, *, configuration: RTCConfiguration | None = None
    ) -> Viewer: ...

    async def disconnect_viewer(self, resource_id: str) -> bool: ...


MediaLookup = Callable[[str], WhepMedia | None]
SDP = "application/sdp"
MAX_OFFER_BYTES = 64 * 1024


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def add_whep_routes(
    app: web.Application,
    lookup: MediaLookup,
    *,
    configuration: Callable[[], RTCConfiguration] | None = None,
) -> None:
    """Register the WHEP endpoint and resource routes on ``app``.

    ``lookup(session_id)`` returns the session's media, or None when it is unknown/ended.
    ``configuration`` builds the RTCConfiguration of each emulator-side peer connection
    (default: no ICE servers, host candidates only).
    """

    async def post_offer(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        if request.content_type != SDP:
            return _problem(415, f"Content-Type must be {SDP}")
        media = lookup(session_id)
        if media is None or media.closed:
            return _problem(404, "no active session")
        if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
            return _problem(413, "offer too large")
        try:  # SDP is UTF-8 (RFC 8866), whatever charset the Content-Type names
            offer = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            return _problem(400, "body is not UTF-8 text")
        if not offer.lstrip().startswith("v=0"):
            return _problem(400, "body is not an SDP offer")
        try:
            viewer = await media.connect_viewer(
                offer, configuration=configuration() if configuration else None
            )
        except ViewerError as exc:
            return _problem(exc.status, str(exc))
        assert viewer.answer_sdp is not None
        location = f"{WHEP_PREFIX}/{session_id}/{viewer.resource_id}"
        # body= (not text=) so the Content-Type carries no charset parameter.
        return web.Response(
            status=201,
            body=viewer.answer_sdp.encode(),
            content_type=SDP,
            headers={"Location": location},
        )

    async def delete_resource(request: web.Request) -> web.StreamResponse:
        media = lookup(request.match_info["session_id"])
        if media is None or not await media.disconnect_viewer(request.match_info["resource_id"]):
            return _problem(404, "no such WHEP resource")
        return web.Response(status=204)

    async def options(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=204,
            headers={
                "Allow": "OPTIONS, POST",
                "Accept-Post": SDP,
                "Access-Control-Allow-Methods": "OPTIONS, POST, DELETE",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Expose-Headers": "Location",
            },
        )

    app.router.add_post(WHEP_PREFIX + "/{session_id}", post_offer)
    app.router.add_route("OPTIONS", WHEP_PREFIX + "/{session_id}", options)
    app.router.add_delete(WHEP_PREFIX + "/{session_id}/{resource_id}", delete_resource)
