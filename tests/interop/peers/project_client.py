"""The project's own receive path behind receive_check's ``Receiver`` interface.

``MediaConnection`` (WHEP + ICE pinned to 127.0.0.1 through ``IceOptions.host_addresses``) with a
``ReceivePipeline`` per track (our jitter buffer / NACK / PLI) and ``avatar_rtc.media``
``VideoStream``/``AudioStream`` (decoder thread, numpy frames). Without ``avatar_rtc.media``
streams, a minimal PyAV decode of the pipeline's ``EncodedFrame``s keeps the transport checked.

Importing this module raises ImportError while ``avatar_rtc.rtc.connection`` is missing;
receive_check then falls back to plain aiortc.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import av

from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.receiver import ReceivePipeline

try:
    from avatar_rtc.media.streams import AudioStream, VideoStream
except ImportError:  # the media layer has not landed: decode here
    AudioStream = VideoStream = None  # type: ignore[assignment,misc]

DECODERS = {"h264": "h264", "vp8": "vp8", "opus": "opus"}


class _PyAvTrack:
    """EncodedFrame -> av frames on the event loop (small pictures, test use only)."""

    def __init__(self, pipeline: ReceivePipeline) -> None:
        self._queue: asyncio.Queue[EncodedFrame] = asyncio.Queue()
        self._codec: Any = None
        self._pending: list[Any] = []
        pipeline.subscribe(self._queue.put_nowait)

    async def recv(self) -> Any:
        while not self._pending:
            encoded = await self._queue.get()
            if self._codec is None:
                self._codec = av.CodecContext.create(DECODERS[encoded.codec.lower()], "r")
            try:
                self._pending.extend(self._codec.decode(av.Packet(encoded.data)))
            except av.error.InvalidDataError:
                continue  # e.g. a delta frame before the first keyframe
        return self._pending.pop(0)


class ProjectReceiver:
    name = "avatar_rtc"

    def __init__(self, url: str, codec: str) -> None:
        self.pipelines = {"video": ReceivePipeline("video"), "audio": ReceivePipeline("audio")}
        self.connection = MediaConnection(
            url,
            ice=IceOptions(host_addresses=("127.0.0.1",)),
            video_codecs=(codec,),
            connect_timeout=30.0,
            on_receiver=lambda receiver, kind: self.pipelines[kind].attach(receiver),
            on_remote_description=self.pipelines["video"].use_remote_description,
        )
        self.tracks: dict[str, Any] = {}
        self.name = "avatar_rtc"

    @classmethod
    def create(cls, url: str, codec: str) -> ProjectReceiver:
        return cls(url, codec)

    async def connect(self) -> None:
        if VideoStream is not None and AudioStream is not None:
            # policy "all": the check counts every decoded frame, none may be dropped.
            self.tracks = {
                "video": VideoStream(self.pipelines["video"], policy="all"),
                "audio": AudioStream(self.pipelines["audio"]),
            }
        else:
            self.tracks = {kind: _PyAvTrack(p) for kind, p in self.pipelines.items()}
            self.name = "avatar_rtc (no media streams: PyAV decode)"
        await self.connection.connect()

    async def video_frame(self) -> Any:
        return await self.tracks["video"].recv()

    async def audio_frame(self) -> Any:
        return await self.tracks["audio"].recv()

    def timings(self) -> dict[str, float]:
        return {f"{k}_s": v for k, v in self.connection.timings.durations().items()}

    def negotiated(self) -> dict[str, str]:
        return {kind: p.codec for kind, p in self.pipelines.items() if p.codec}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, pipeline in self.pipelines.items():
            out[kind] = asdict(pipeline.stats())
            track = self.tracks.get(kind)
            if track is not None and hasattr(track, "stats"):
                out[f"{kind}_stream"] = asdict(track.stats())
        pair = self.connection.selected_pair()
        if pair is not None:
            out["selected_pair"] = pair.describe()
        return out

    async def close(self) -> None:
        for track in self.tracks.values():
            if hasattr(track, "close"):
                result = track.close()
                if asyncio.iscoroutine(result):
                    await result
        await self.connection.close()
