"""FanoutMedia: the media of one emulated session in fan-out mode (``Emulator(fanout=True)``).

It plays the shared :class:`~.source.FanoutSource` loop to its WHEP viewers instead of
rendering and encoding an avatar of its own: what a load generator needs (dozens of sessions
from one process), not what a client test of speech needs. ``say_text``/``say_audio`` and
``interrupt`` are accepted and ignored: the loop speaks a sentence every few seconds anyway.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiortc import RTCConfiguration

from avatar_rtc.emulator.fanout.outlet import Outlet
from avatar_rtc.emulator.fanout.source import FanoutSource
from avatar_rtc.emulator.media.viewer import MediaClosedError, Viewer
from avatar_rtc.emulator.media.viewer_slot import check_room, negotiate_reserved

__all__ = ["FanoutMedia"]

logger = logging.getLogger(__name__)


class FanoutMedia:
    """One session's viewers, fed from the shared ``source`` (see the module docstring)."""

    def __init__(self, source: FanoutSource) -> None:
        self.source = source
        self.closed = False
        self._viewers: dict[str, tuple[Viewer, Outlet]] = {}
        self._closing: set[asyncio.Future[bool]] = set()

    @property
    def viewers(self) -> dict[str, Viewer]:
        return {rid: viewer for rid, (viewer, _) in self._viewers.items()}

    async def start(self) -> None:
        if self.closed:
            raise MediaClosedError("media closed")

    async def say_text(self, text: str, *, turn_id: str, is_final: bool = True) -> None:
        logger.debug("fan-out session: say-text %s ignored (the loop plays)", turn_id)

    async def say_audio(
        self, audio: bytes, *, duration: float, turn_id: str, filename: str | None
    ) -> None:
        logger.debug("fan-out session: say-audio %s ignored (the loop plays)", turn_id)

    def interrupt(self) -> None:
        pass

    async def connect_viewer(
        self, offer_sdp: str, *, configuration: RTCConfiguration | None = None
    ) -> Viewer:
        """Negotiate a viewer and start sending it the loop (same errors as ``AvatarMedia``)."""
        options = self.source.options
        check_room(self, len(self._viewers), options.max_viewers)
        await self.source.encoded()  # the first viewer of the process waits for the encode
        resource_id = uuid.uuid4().hex
        outlet = Outlet(self.source.rtp_time)
        viewer = Viewer(
            resource_id,
            video=outlet.video_track,
            audio=outlet.audio_track,
            video_codec=options.video_codec,
            on_keyframe_request=outlet.request_keyframe,
            on_frame_sent=lambda *_: None,
            on_closed=self._viewer_closed,
            configuration=configuration,
            connect_timeout=options.viewer_connect_timeout,
            host_addresses=options.host_addresses,
        )
        # Reserve the slot before the first await: a concurrent POST must see it (409).
        self._viewers[resource_id] = (viewer, outlet)
        await negotiate_reserved(self, viewer, offer_sdp)
        outlet.bind(viewer)
        self.source.add(outlet)
        return viewer

    async def disconnect_viewer(self, resource_id: str) -> bool:
        entry = self._viewers.pop(resource_id, None)
        if entry is None:
            return False
        viewer, outlet = entry
        await self.source.remove(outlet)
        await viewer.close()
        return True

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for resource_id in list(self._viewers):
            await self.disconnect_viewer(resource_id)

    def _viewer_closed(self, viewer: Viewer) -> None:
        task = asyncio.ensure_future(self.disconnect_viewer(viewer.resource_id))
        self._closing.add(task)  # keep a reference until done
        task.add_done_callback(self._closing.discard)
