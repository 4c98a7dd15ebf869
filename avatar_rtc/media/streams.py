"""VideoStream / AudioStream: bounded, policy-driven delivery of decoded frames.

A stream registers with the track's shared :class:`~.decoder.TrackDecoder` (decoding starts
with the first stream of a track and stops when the last one closes) and is consumed either as
an async iterator (``async for frame in stream``) or through ``on_frame`` callbacks (when a
callback is registered, frames go to callbacks instead of the iterator queue).

Queue policies (enforced on the decoder thread, so a busy event loop cannot make them grow):

- ``latest`` (video default, the ML choice): keep the newest ``capacity`` frames, drop older
  ones and count them. A consumer that stalls gets the newest picture next, not a backlog.
- ``all`` (audio default; recording): lossless while the consumer keeps up. Live RTP cannot be
  back-pressured, so beyond ``capacity`` (video default 300 frames ~10 s at 30 fps; audio 500
  frames = 10 s of 20 ms) the oldest frame is dropped with a (rate-limited) warning and counted.
  Queued video frames are decoded yuv420p (1.4 MB each at 720p, 3.1 MB at 1080p): a full
  300-frame queue holds ~0.4 / ~0.9 GB, so lower ``capacity`` for large frames.

Video conversion to numpy runs off the event loop: on the decoder thread when a consumer is
already waiting (lowest latency), else when the frame is taken, in a worker thread for frames
larger than 320x240. ``format=None`` disables conversion (use ``yuv_planes()``/``av_frame``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ..rtc.encoded_frame import FrameSource
from .decoder import DecodedFrame, TrackDecoder, decoder_for
from .frames import AudioFrame, AudioRechunker, PixelFormat, SampleFormat, VideoFrame

__all__ = ["AudioStream", "Policy", "StreamStats", "VideoStream"]

logger = logging.getLogger(__name__)

Policy = Literal["latest", "all"]
T = TypeVar("T", VideoFrame, AudioFrame)

_SMALL_PIXELS = 320 * 240


@dataclass(frozen=True, slots=True)
class StreamStats:
    kind: str
    policy: Policy
    capacity: int
    received: int
    delivered: int
    dropped: int
    queued: int
    callbacks_dropped: int


class _Stream(Generic[T]):
    _kind = "?"

    def __init__(
        self,
        source: FrameSource | TrackDecoder,
        *,
        capacity: int,
        policy: Policy,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if policy not in ("latest", "all"):
            raise ValueError("policy must be 'latest' or 'all'")
        self.capacity = capacity
        self.policy: Policy = policy
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._decoder = source if isinstance(source, TrackDecoder) else decoder_for(source)
        if self._decoder.kind != self._kind:
            raise ValueError(f"{type(self).__name__} needs a {self._kind} source")
        self._lock = threading.Lock()
        self._queue: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[T], Any]] = []
        self._cb_pending = 0  # written by the decoder thread and the loop: under _lock
        self._cb_tasks: set[asyncio.Task[Any]] = set()  # the loop keeps only weak refs
        self._closed = False
        self._received = 0
        self._delivered = 0
        self._dropped = 0
        self._cb_dropped = 0
        self._last_warning = 0.0
        self._remove_sink: Callable[[], None] | None = self._decoder.add_sink(
            self._on_decoded, on_end=self.close
        )

    # -- public --------------------------------------------------------------------------
    def __aiter__(self) -> _Stream[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            with self._lock:
                if self._queue:
                    item = self._queue.popleft()
                    break
                if self._closed:
                    raise StopAsyncIteration
                waiter = self._loop.create_future()
                self._waiter = waiter
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None
        item = await self._finish(item)
        self._delivered += 1
        return item

    async def recv(self) -> T:
        """The next frame (``StopAsyncIteration`` once closed)."""
        return await self.__anext__()

    def on_frame(self, callback: Callable[[T], Any]) -> Callable[[], None]:
        """Call ``callback(frame)`` on the event loop for every frame; returns the remover."""
        self._callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return remove

    def stats(self) -> StreamStats:
        with self._lock:
            queued = len(self._queue)
        return StreamStats(
            kind=self._kind,
            policy=self.policy,
            capacity=self.capacity,
            received=self._received,
            delivered=self._delivered,
            dropped=self._dropped,
            queued=queued,
            callbacks_dropped=self._cb_dropped,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving (the decoder stops if this was its last stream)."""
        remove, self._remove_sink = self._remove_sink, None
        if remove is not None:
            remove()
        with self._lock:
            self._closed = True
            self._queue.clear()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._wake(waiter)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> _Stream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- decoder thread ------------------------------------------------------------------
    def _make(self, decoded: DecodedFrame, prepare: bool) -> list[T]:
        raise NotImplementedError

    async def _finish(self, item: T) -> T:
        return item

    def _on_decoded(self, decoded: DecodedFrame) -> None:
        if self._closed:
            return
        direct = bool(self._callbacks)
        items = self._make(decoded, direct or self._waiter is not None)
        if not items:
            return
        self._received += len(items)
        if direct:
            for item in items:
                with self._lock:
                    busy = self._cb_pending >= self.capacity
                    if not busy:
                        self._cb_pending += 1
                if busy:
                    self._cb_dropped += 1  # event loop too busy for the callbacks
                    continue
                self._call_soon(self._run_callbacks, item)
            return
        dropped = 0
        with self._lock:
            if self._closed:  # closed while converting: close() already emptied the queue
                return
            for item in items:
                if len(self._queue) >= self.capacity:
                    self._queue.popleft()
                    dropped += 1
                self._queue.append(item)
            waiter, self._waiter = self._waiter, None
        if dropped:
            self._dropped += dropped
            if self.policy == "all":
                now = time.monotonic()
                if now - self._last_warning > 5.0:
                    self._last_warning = now
                    logger.warning(
                        "%s stream (policy 'all') is %d frames behind: dropped %d oldest "
                        "frames so far",
                        self._kind,
                        self.capacity,
                        self._dropped,
                    )
        if waiter is not None:
            self._call_soon(self._wake, waiter)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed
            self._loop.call_soon_threadsafe(fn, *args)

    @staticmethod
    def _wake(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def _run_callbacks(self, item: T) -> None:
        with self._lock:
            self._cb_pending -= 1
        if self._closed:
            return
        self._delivered += 1
        for cb in tuple(self._callbacks):
            try:
                result = cb(item)
                if asyncio.iscoroutine(result):
                    task = self._loop.create_task(result)
                    self._cb_tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                logger.exception("%s frame callback failed", self._kind)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._cb_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s frame callback failed", self._kind, exc_info=task.exception())


class VideoStream(_Stream[VideoFrame]):
    """Decoded video frames of one track; ``frame.array`` is numpy in ``format``/``size``."""

    _kind = "video"

    def __init__(
        self,
        source: FrameSource | TrackDecoder,
        *,
        format: PixelFormat | None = "rgb24",
        size: tuple[int, int] | None = None,
        capacity: int | None = None,
        policy: Policy = "latest",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.format = format
        self.size = size
        if capacity is None:
            capacity = 2 if policy == "latest" else 300
        super().__init__(source, capacity=capacity, policy=policy, loop=loop)

    def _make(self, decoded: DecodedFrame, prepare: bool) -> list[VideoFrame]:
        frame = VideoFrame.from_decoded(
            decoded, default_format=self.format or "rgb24", default_size=self.size
        )
        if prepare and self.format is not None:
            frame.to_ndarray()  # a consumer is waiting: convert here, off the loop
        return [frame]

    async def _finish(self, item: VideoFrame) -> VideoFrame:
        if self.format is None:
            return item
        if item.is_converted():
            return item
        w, h = self.size or (item.width, item.height)
        if w * h > _SMALL_PIXELS:
            await self._loop.run_in_executor(None, item.to_ndarray)
        else:
            item.to_ndarray()
        return item


class AudioStream(_Stream[AudioFrame]):
    """Decoded audio of one track as fixed-size PCM frames (samples, channels)."""

    _kind = "audio"

    def __init__(
        self,
        source: FrameSource | TrackDecoder,
        *,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: int = 20,
        dtype: SampleFormat = "int16",
        capacity: int | None = None,
        policy: Policy = "all",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_ms = frame_ms
        self.dtype: SampleFormat = dtype
        self._rechunker = AudioRechunker(
            sample_rate=sample_rate, channels=channels, frame_ms=frame_ms, dtype=dtype
        )
        if capacity is None:
            capacity = max(1, 10_000 // frame_ms) if policy == "all" else 5
        super().__init__(source, capacity=capacity, policy=policy, loop=loop)

    def _make(self, decoded: DecodedFrame, prepare: bool) -> list[AudioFrame]:
        enc = decoded.encoded
        return self._rechunker.push(
            decoded.frame, enc.presentation_time, enc.clock_source, enc.arrival_time
        )

    @property
    def gaps_filled(self) -> int:
        return self._rechunker.gaps_filled
