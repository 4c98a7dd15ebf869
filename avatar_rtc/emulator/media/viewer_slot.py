"""The viewer-slot steps every emulator media shares: check for room, then negotiate a viewer
whose slot is already reserved, freeing the slot when that fails or the media closed meanwhile.

The caller reserves the slot itself (what it stores differs), before its first await: a
concurrent POST must see the slot taken (409).
"""

from __future__ import annotations

from typing import Protocol

from avatar_rtc.emulator.media.viewer import MediaClosedError, Viewer, ViewerLimitError

__all__ = ["ViewerSlots", "check_room", "negotiate_reserved"]


class ViewerSlots(Protocol):
    """What both ``AvatarMedia`` and ``FanoutMedia`` offer."""

    @property
    def closed(self) -> bool: ...

    async def disconnect_viewer(self, resource_id: str) -> bool: ...


def check_room(media: ViewerSlots, viewers: int, max_viewers: int) -> None:
    """Raise MediaClosedError / ViewerLimitError when ``media`` cannot take one more viewer."""
    if media.closed:
        raise MediaClosedError("session media is closed")
    if viewers >= max_viewers:
        raise ViewerLimitError("the stream already has a viewer")


async def negotiate_reserved(media: ViewerSlots, viewer: Viewer, offer_sdp: str) -> None:
    """Apply ``offer_sdp`` to ``viewer`` (slot reserved in ``media``); on any failure, or if
    ``media`` closed during the negotiation, disconnect the viewer and raise."""
    try:
        await viewer.negotiate(offer_sdp)
    except BaseException:
        await media.disconnect_viewer(viewer.resource_id)
        raise
    if media.closed:
        await media.disconnect_viewer(viewer.resource_id)
        raise MediaClosedError("session media closed during negotiation")
