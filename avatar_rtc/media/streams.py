"""VideoStream / AudioStream: bounded, policy-driven delivery of decoded frames.

A stream registers with the track's shared :class:`~.decoder.TrackDecoder` (decoding starts
with the first stream of a track and stops when the last one closes) and is consumed either as
an async iterator (``async for frame in stream``) or through ``on_frame`` callbacks (when a
callback is registered, frames go to callbacks instead of the iterator queue).

Queue policies (enforced where frames are decoded: video on its decoder thread, so a busy event
loop cannot make them grow; audio on the event loop):

- ``latest`` (video default, the ML choice): keep the newest ``capacity`` frames (video
  default 1), drop older ones and count them. A consumer that stalls gets the newest picture
  next, not a backlog (with ``capacity`` > 1: the newest few, oldest first).
- ``all`` (audio default; recording): lossless while the consumer keeps up. Live RTP cannot be
  back-pressured, so beyond ``capacity`` (video default 300 frames ~10 s at 30 fps; audio 500
  frames = 10 s of 20 ms) the oldest frame is dropped and counted (``stats().dropped``). The
  first overflow of a stream is logged as a warning; later ones are only counted
  (``stats().overflows``): a stream nobody reads must not fill the log for the whole session.
  Queued video frames are decoded yuv420p (1.4 MB each at 720p, 3.1 MB at 1080p): a full
  300-frame queue holds ~0.4 / ~0.9 GB, so lower ``capacity`` for large frames.

A stream ends (the iterator stops) when it or its session is closed; frames still queued then
are discarded and counted as ``dropped`` (read them before closing). When the session's media
ended for good instead (lost and not brought back, the service session gone: :meth:`end`), the
frames already queued are still handed out, then the iterator raises that error
(:attr:`AvatarSession.error <avatar_rtc.session.AvatarSession.error>`), not a quiet stop a
pipeline could take for the end of the job.

Several tasks may read one stream (each frame goes to one of them). Callbacks that are
coroutine functions run as tasks; a frame counts against ``capacity`` until its tasks end (the
excess is dropped and counted in ``callbacks_dropped``), and ``close()`` cancels them.

Video conversion to numpy runs off the event loop: on the decoder thread when a consumer is
already waiting (lowest latency), else when the frame is taken, in a worker thread for frames
larger than 320x240. Not when the decoder itself runs on the loop
(``SessionOptions.decode_video_on_loop``): the conversion then stays there too, as a hand-off
to a worker thread and back costs more than it keeps off a loop that decodes anyway.
``VideoFormat(pixel_format=None)`` disables conversion (use ``yuv_planes()``/``av_frame``).
Formats are :class:`~.formats.VideoFormat` / :class:`~.formats.AudioFormat`; ``capacity`` and
``policy`` are the stream's own arguments.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from ..errors import AvatarRTCError, ConfigurationError
from ..rtc.encoded_frame import FrameSource
from .decoder import DecodedFrame, TrackDecoder, call_from_sink, decoder_for
from .formats import AudioFormat, VideoFormat
from .frames import AudioFrame, AudioRechunker, VideoFrame

__all__ = ["AudioStream", "Policy", "StreamStats", "VideoStream"]

logger = logging.getLogger(__name__)

Policy = Literal["latest", "all"]
T = TypeVar("T", VideoFrame, AudioFrame)
FormatT = TypeVar("FormatT", VideoFormat, AudioFormat)

_SMALL_PIXELS = 320 * 240


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream. ``dropped``: frames dropped from the queue (the newest kept
    under ``latest``; the oldest on overflow under ``all``), and those a ``close()`` discarded.
    ``overflows``: times an ``all`` stream fell ``capacity`` frames behind after having caught
    up (only the first is logged).
    """

    kind: str
    policy: Policy
    capacity: int
    received: int
    delivered: int
    dropped: int
    queued: int
    callbacks_dropped: int
    overflows: int = 0


def _checked(format: Any, kind: type[FormatT]) -> FormatT:
    """``format``, or the default one; a string (the old ``format="rgb24"``) is refused here
    rather than failing on the decoder thread."""
    if format is None:
        return kind()
    if not isinstance(format, kind):
        raise TypeError(f"format must be a {kind.__name__}, not {format!r}")
    return format


class _Stream(Generic[T]):
    _kind = "?"
    default_policy: ClassVar[Policy]  # each kind's own

    def __init__(
        self,
        source: FrameSource | TrackDecoder,
        *,
        capacity: int | None,
        policy: Policy | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        policy = policy if policy is not None else self.default_policy
        if policy not in ("latest", "all"):
            raise ConfigurationError(f"policy {policy!r}: 'latest' or 'all'")
        capacity = capacity if capacity is not None else self._default_capacity(policy)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError(f"capacity {capacity!r}: a whole number of frames >= 1")
        self.capacity = capacity
        self.policy: Policy = policy
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._decoder = source if isinstance(source, TrackDecoder) else decoder_for(source)
        if self._decoder.kind != self._kind:
            raise ConfigurationError(f"{type(self).__name__} needs a {self._kind} source")
        self._lock = threading.Lock()
        self._queue: collections.deque[T] = collections.deque()
        self._waiters: list[asyncio.Future[None]] = []  # readers waiting for a frame
        self._callbacks: list[Callable[[T], Any]] = []
        self._cb_pending = 0  # written by the decoder thread and the loop: under _lock
        self._cb_tasks: set[asyncio.Task[Any]] = set()  # the loop keeps only weak refs
        self._closed = False
        self._cleared = False  # closed by close(): the queue emptied (``end`` keeps it)
        self._error: AvatarRTCError | None = None  # why the media ended (``end``)
        self._error_tb: TracebackType | None = None  # its traceback where it was made
        self._on_raised: Callable[[], None] | None = None  # told when a read raised it
        self._received = 0
        self._delivered = 0
        self._dropped = 0
        self._cb_dropped = 0
        self._overflows = 0
        self._behind = False  # overflowed and not caught up since (the queue never emptied)
        self._remove_sink: Callable[[], None] | None = None  # (on_end may come at once)
        self._remove_sink = self._decoder.add_sink(self._on_decoded, on_end=self.close)

    # -- public --------------------------------------------------------------------------
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while True:
            with self._lock:
                if self._queue:
                    item = self._queue.popleft()
                    self._behind = self._behind and bool(self._queue)
                    break
                if self._closed:
                    if self._error is not None:
                        if self._on_raised is not None:
                            self._on_raised()
                        # (from where it was made each time: raised again, a traceback grows)
                        raise self._error.with_traceback(self._error_tb)
                    raise StopAsyncIteration
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        try:
            item = await self._finish(item)
        except asyncio.CancelledError:
            self._give_back(item)  # cancelled while converting: the frame is not lost
            raise
        self._delivered += 1
        return item

    def _give_back(self, item: T) -> None:
        with self._lock:  # (the decoder thread counts drops too)
            if not self._cleared and len(self._queue) < self.capacity:
                self._queue.appendleft(item)
            else:
                self._dropped += 1  # newer frames filled the queue meanwhile (or it closed)

    async def recv(self) -> T:
        """The next frame (``StopAsyncIteration`` once closed; the error of :meth:`end`)."""
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
            overflows=self._overflows,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving (the decoder stops if this was its last stream). Frames still
        queued are discarded, counted in ``stats().dropped``: read them first to keep them."""
        remove, self._remove_sink = self._remove_sink, None
        if remove is not None:
            remove()
        with self._lock:
            self._closed = self._cleared = True
            self._dropped += len(self._queue)
            self._queue.clear()
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._wake(waiter)
        for task in tuple(self._cb_tasks):
            task.cancel()

    def end(self, error: AvatarRTCError, on_raised: Callable[[], None] | None = None) -> None:
        """The media ended for good with ``error``: no more frames come; those queued are
        still handed out, then the iterator raises ``error`` (and calls ``on_raised``; the
        session calls this)."""
        remove, self._remove_sink = self._remove_sink, None
        if remove is not None:
            remove()
        with self._lock:
            if self._error is None:  # (also on a stream its decoder's end closed already)
                self._error, self._error_tb = error, error.__traceback__
                self._on_raised = on_raised
            if self._closed:
                return
            self._closed = True
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._wake(waiter)

    @property
    def error(self) -> AvatarRTCError | None:
        """Why the stream ended, when the media ended for good (see :meth:`end`)."""
        return self._error

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- decoder thread ------------------------------------------------------------------
    def _default_capacity(self, policy: Policy) -> int:
        raise NotImplementedError

    def _make(self, decoded: DecodedFrame, prepare: bool) -> list[T]:
        raise NotImplementedError

    async def _finish(self, item: T) -> T:
        return item

    def _on_decoded(self, decoded: DecodedFrame) -> None:
        if self._closed:
            return
        direct = bool(self._callbacks)
        items = self._make(decoded, direct or bool(self._waiters))
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
            if self._cleared:  # closed while converting: close() already emptied the queue
                self._dropped += len(items)
                return
            for item in items:
                if len(self._queue) >= self.capacity:
                    self._queue.popleft()
                    dropped += 1
                self._queue.append(item)
            waiters, self._waiters = self._waiters, []
            overflow = dropped > 0 and self.policy == "all" and not self._behind
            if overflow:
                self._behind = True
            self._dropped += dropped
        if overflow:
            self._overflows += 1
            if self._overflows == 1:
                logger.warning(
                    "%s stream (policy 'all') fell %d frames behind: dropping its oldest frames "
                    "(logged once per stream; stats().dropped and .overflows count them)",
                    self._kind,
                    self.capacity,
                )
        for waiter in waiters:  # (the readers that lose the race wait again)
            self._call_soon(self._wake, waiter)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        call_from_sink(self._loop, fn, *args)

    @staticmethod
    def _wake(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def _run_callbacks(self, item: T) -> None:
        tasks: list[asyncio.Task[Any]] = []
        if self._cleared:  # closed before the loop got to it: dropped, like the queue
            self._dropped += 1
        else:  # (after ``end``, the frames decoded before it still go)
            self._delivered += 1
            for cb in tuple(self._callbacks):
                try:
                    result = cb(item)
                except Exception:
                    logger.exception("%s frame callback failed", self._kind)
                    continue
                if asyncio.iscoroutine(result):
                    task = self._loop.create_task(result)
                    self._cb_tasks.add(task)
                    task.add_done_callback(self._callback_done)
                    tasks.append(task)
        if not tasks:
            self._callback_slot_free()
            return
        # The frame holds its slot until its coroutines end: a slow async callback makes
        # later frames drop (counted) instead of piling up tasks without bound.
        ended = asyncio.gather(*tasks, return_exceptions=True)
        ended.add_done_callback(lambda _: self._callback_slot_free())

    def _callback_slot_free(self) -> None:
        with self._lock:
            self._cb_pending -= 1

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._cb_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s frame callback failed", self._kind, exc_info=task.exception())


class VideoStream(_Stream[VideoFrame]):
    """Decoded video frames of one track; ``frame.array`` is numpy in ``format``.

    ``policy`` defaults to ``latest``; ``capacity`` to 1 frame under ``latest`` (the newest),
    300 under ``all``.
    """

    _kind = "video"
    default_policy: ClassVar[Policy] = "latest"

    def __init__(
        self,
        source: FrameSource | TrackDecoder,
        format: VideoFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.format = _checked(format, VideoFormat)
        super().__init__(source, capacity=capacity, policy=policy, loop=loop)

    def _default_capacity(self, policy: Policy) -> int:
        return 1 if policy == "latest" else 300

    def _make(self, decoded: DecodedFrame, prepare: bool) -> list[VideoFrame]:
        frame = VideoFrame.from_decoded(decoded, self.format)
        if prepare and self.format.pixel_format is not None:
            # A consumer is waiting: convert here, off the loop. A size swscale refuses is
            # left to the reader's conversion, which raises it to the reader (here it only
            # failed the sink, frame after frame, while the reader waited for ever).
            with contextlib.suppress(ConfigurationError):
                frame.to_ndarray()
        return [frame]

    async def _finish(self, item: VideoFrame) -> VideoFrame:
        if self.format.pixel_format is None:
            return item
        if item.is_converted():
            return item
        w, h = self.format.size or (item.width, item.height)
        if w * h > _SMALL_PIXELS and self._decoder.threaded:
            await self._loop.run_in_executor(None, item.to_ndarray)
        else:
            item.to_ndarray()
        return item


class AudioStream(_Stream[AudioFrame]):
    """Decoded audio of one track as fixed-size PCM frames (samples, channels) in ``format``.

    ``policy`` defaults to ``all``; ``capacity`` to 10 s of frames under ``all``, 5 frames
    under ``latest``.
    """

    _kind = "audio"
    default_policy: ClassVar[Policy] = "all"

    def __init__(
        self,
        source: FrameSource | TrackDecoder,
        format: AudioFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.format = _checked(format, AudioFormat)
        self._rechunker = AudioRechunker(self.format)
        super().__init__(source, capacity=capacity, policy=policy, loop=loop)

    def _default_capacity(self, policy: Policy) -> int:
        return max(1, 10_000 // self.format.frame_ms) if policy == "all" else 5

    def _make(self, decoded: DecodedFrame, prepare: bool) -> list[AudioFrame]:
        enc = decoded.encoded
        return self._rechunker.push(
            decoded.frame, enc.presentation_time, enc.clock_source, enc.arrival_time
        )

    @property
    def gaps_filled(self) -> int:
        return self._rechunker.gaps_filled
