"""WHEP routes of the emulator, as the avatar service answers them.

``POST /v1/whep/{session_id}`` with ``Content-Type: application/sdp``: 201 with the answer SDP
(non-trickle: aiortc gathers before answering, so it holds the candidates) and a relative
``Location: /v1/whep/{session_id}/{resource_id}``; 404 when the session is unknown or ended,
409 while the stream already has a viewer, 415 for any other content type, 400 for an offer
that cannot be applied. ``DELETE`` on the Location ends that viewer (204; 404 when unknown).
No Authorization is checked: the service does not ask for one on WHEP.

With ``ice_restart=True`` (not the service's behaviour as far as its documentation goes: it
announces no PATCH), the 201 carries an ``ETag`` and ``Accept-Patch:
application/trickle-ice-sdpfrag``, and ``PATCH`` on the Location takes an sdpfrag (RFC 8840):
``If-Match: "*"`` with new credentials restarts the viewer's ICE (200, our new credentials and
candidates, a new ETag); ``If-Match`` with the current ETag is a trickle, ignored (204: the
offer held every candidate); another ETag 412, none 428, another content type 415.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from aiortc import RTCConfiguration

from avatar_rtc.emulator.control import WHEP_PREFIX
from avatar_rtc.emulator.media.viewer import Viewer, ViewerError
from avatar_rtc.rtc.sdp_candidates import SDPFRAG_TYPE, parse_sdpfrag

logger = logging.getLogger(__name__)


class WhepMedia(Protocol):
    """What WHEP needs of a session's media: ``AvatarMedia``, or the fan-out's ``FanoutMedia``."""

    closed: bool

    @property
    def viewers(self) -> dict[str, Viewer]: ...

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
    ice_restart: bool = False,
) -> None:
    """Register the WHEP endpoint and resource routes on ``app``.

    ``lookup(session_id)`` returns the session's media, or None when it is unknown/ended.
    ``configuration`` builds the RTCConfiguration of each emulator-side peer connection
    (default: no ICE servers, host candidates only). ``ice_restart``: PATCH restarts ICE
    (module docstring).
    """
    # (session id, resource id) -> current ETag (with ice_restart). A resource can end without
    # a DELETE (its session ended, its peer failed): those are forgotten on the next new tag.
    etags: dict[tuple[str, str], str] = {}

    def ended(key: tuple[str, str]) -> bool:
        media = lookup(key[0])
        return media is None or media.closed or key[1] not in media.viewers

    def new_etag(session_id: str, resource_id: str) -> str:
        for key in [key for key in etags if ended(key)]:
            del etags[key]
        etag = etags[session_id, resource_id] = f'"{secrets.token_hex(8)}"'
        return etag

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
        headers = {"Location": location}
        if ice_restart:
            headers["ETag"] = new_etag(session_id, viewer.resource_id)
            headers["Accept-Patch"] = SDPFRAG_TYPE
        # body= (not text=) so the Content-Type carries no charset parameter.
        return web.Response(
            status=201, body=viewer.answer_sdp.encode(), content_type=SDP, headers=headers
        )

    async def delete_resource(request: web.Request) -> web.StreamResponse:
        match = request.match_info
        session_id, resource_id = match["session_id"], match["resource_id"]
        etags.pop((session_id, resource_id), None)
        media = lookup(session_id)
        if media is None or not await media.disconnect_viewer(resource_id):
            return _problem(404, "no such WHEP resource")
        return web.Response(status=204)

    async def patch_resource(request: web.Request) -> web.StreamResponse:
        match = request.match_info
        session_id, resource_id = match["session_id"], match["resource_id"]
        media = lookup(session_id)
        viewer = media.viewers.get(resource_id) if media is not None else None
        if media is None or media.closed or viewer is None:
            return _problem(404, "no such WHEP resource")
        if request.content_type != SDPFRAG_TYPE:
            return _problem(415, f"Content-Type must be {SDPFRAG_TYPE}")
        if_match = request.headers.get("If-Match")
        if if_match is None:
            return _problem(428, "If-Match is required")
        restart = if_match in ("*", '"*"')  # RFC 9110 wildcard; the WHEP draft quotes it
        if not restart and if_match != etags.get((session_id, resource_id)):
            return _problem(412, "ETag does not match")
        if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
            return _problem(413, "fragment too large")
        try:
            fragment = parse_sdpfrag((await request.read()).decode("utf-8"))
        except UnicodeDecodeError:
            return _problem(400, "body is not UTF-8 text")
        if not restart:
            return web.Response(status=204)  # a trickle: the offer held every candidate
        try:
            answer = await viewer.restart_ice(fragment)
        except ViewerError as exc:
            return _problem(exc.status, str(exc))
        logger.info("viewer %s: ICE restart", resource_id)
        return web.Response(
            status=200,
            body=answer.encode(),
            content_type=SDPFRAG_TYPE,
            headers={"ETag": new_etag(session_id, resource_id)},
        )

    async def options(request: web.Request) -> web.StreamResponse:
        patch = ", PATCH" if ice_restart else ""
        headers = {
            "Allow": "OPTIONS, POST",
            "Accept-Post": SDP,
            "Access-Control-Allow-Methods": f"OPTIONS, POST, DELETE{patch}",
            "Access-Control-Allow-Headers": "Content-Type, If-Match" if patch else "Content-Type",
            "Access-Control-Expose-Headers": f"Location{', ETag, Accept-Patch' if patch else ''}",
        }
        return web.Response(status=204, headers=headers)

    app.router.add_post(WHEP_PREFIX + "/{session_id}", post_offer)
    app.router.add_route("OPTIONS", WHEP_PREFIX + "/{session_id}", options)
    app.router.add_delete(WHEP_PREFIX + "/{session_id}/{resource_id}", delete_resource)
    if ice_restart:
        app.router.add_patch(WHEP_PREFIX + "/{session_id}/{resource_id}", patch_resource)
