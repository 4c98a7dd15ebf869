"""TrackDecoder: one decoder per track, alive only while someone consumes frames.

The first sink (a stream) subscribes the decoder to the receive pipeline and starts it;
removing the last sink unsubscribes and ends it, so a session nobody watches decodes nothing.

Video decodes on a thread of its own. Audio decodes where its packets arrive, on the event
loop: an Opus packet decodes in ~30 µs, less than handing it to a thread and back (measured with
4 sessions in one process: the audio thread cost 1.5 % of a core per session, most of it
wake-ups; ``threaded=True`` restores it).

Input queue of a threaded decoder (filled on the event loop, drained by the thread) is bounded:
- **video**: a frame waits at most ``max_queue_delay`` seconds (default 0.3), and at most
  ``video_queue`` frames (default 64) wait. Past either the decoder is behind; queued frames are
  dropped and decoding resumes at the next keyframe (a PLI is requested), so latency cannot
  grow. A burst decoded in a few ms is not "behind": the NACKed tail of an outage (dozens of
  frames at once, each referencing the one before) is decoded in full rather than dropped for
  the keyframe after it. A decoder joining mid-stream starts at a keyframe.
- **audio** (threaded): at most ``audio_queue`` packets (default 50, ~1 s); when full the oldest
  is dropped (Opus packets decode independently enough; the gap becomes silence downstream).

Decoders come from :func:`.codecs.create_decoder` (video: slice threading on ``thread_count``
threads, default 1). Decode errors request a keyframe and skip to it.

Never frozen for good: a video decoder that skips to a keyframe which does not come within
``keyframe_wait`` seconds (a sender deaf to PLI) decodes the next frame anyway, over the
picture it has (artefacts until the next keyframe), provided it decoded a keyframe before;
``keyframe_wait=None`` waits for ever. Counted in ``DecoderStats.keyframe_wait_timeouts``.

One decoder per source (:func:`decoder_for`): the registry is weak on the source and the decoder
holds its source weakly too, so dropping the pipeline frees both.

Sinks run on the decoder thread (audio: on the event loop) and must be quick (streams only
enqueue or convert).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from ..rtc.encoded_frame import EncodedFrame, FrameSource, MediaKind
from .codecs import create_decoder

__all__ = ["DecodedFrame", "DecoderStats", "TrackDecoder", "call_from_sink", "decoder_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded ``av`` frame with the timing of the encoded frame it came from."""

    frame: Any  # av.VideoFrame | av.AudioFrame
    encoded: EncodedFrame
    decoded_time: float


@dataclass(frozen=True, slots=True)
class DecoderStats:
    kind: MediaKind
    running: bool
    decoded: int
    decode_errors: int
    dropped_behind: int
    skipped_to_keyframe: int
    decode_time_avg_ms: float
    keyframe_wait_timeouts: int = 0


Sink = Callable[[DecodedFrame], None]
# The input: (time queued, frame); None stops the thread.
_Queue = collections.deque[tuple[float, EncodedFrame] | None]

# The shared decoder of each source. Weak on the source; a decoder refers to its source
# weakly as well, or the entry would keep its own key alive.
_DECODERS: weakref.WeakKeyDictionary[FrameSource, TrackDecoder] = weakref.WeakKeyDictionary()
_DECODERS_LOCK = threading.Lock()


def decoder_for(
    source: FrameSource, create: Callable[[FrameSource], TrackDecoder] | None = None
) -> TrackDecoder:
    """The shared decoder of ``source``, made on first use by ``create`` (default
    ``TrackDecoder(source)``; e.g. ``functools.partial(TrackDecoder, video_queue=30)``)."""
    with _DECODERS_LOCK:
        dec = _DECODERS.get(source)
        if dec is None:
            dec = _DECODERS[source] = (create or TrackDecoder)(source)
        return dec


def call_from_sink(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """From a sink: run ``fn`` on ``loop`` soon. A sink runs on a decoder thread or, decoding
    inline, on the loop itself, which needs no wake-up through the loop's self-pipe. Dropped
    once the loop closed."""
    try:
        on_loop = asyncio.get_running_loop() is loop
    except RuntimeError:
        on_loop = False
    if on_loop:
        loop.call_soon(fn, *args)
        return
    with contextlib.suppress(RuntimeError):  # loop closed
        loop.call_soon_threadsafe(fn, *args)


@functools.cache
def _time_base(clock_rate: int) -> Fraction:
    return Fraction(1, clock_rate)  # one per packet was a few µs of pure Python each


class _NoDecoder(Exception):
    """No decoder for the codec (not ValueError: PyAV's decode errors are ValueErrors too)."""


class _Decoding:
    """One decoder context, remade when the codec changes, and the encoded frames it has not
    answered yet (a decoded frame is matched to its encoded one by pts)."""

    def __init__(self, thread_count: int) -> None:
        self._thread_count = thread_count
        self._ctx: Any = None
        self._codec: str | None = None
        self._meta: dict[int, EncodedFrame] = {}
        self._pts = 0
        self.had_key = False  # a keyframe was decoded: there is a picture to conceal over

    def decode(self, item: EncodedFrame) -> list[tuple[Any, EncodedFrame]]:
        """The frames ``item`` completes; raises ``av.FFmpegError`` (or ``_NoDecoder``)."""
        if item.codec != self._codec:
            try:
                self._ctx = create_decoder(item.codec, self._thread_count)
            except (ValueError, av.FFmpegError) as exc:
                raise _NoDecoder(item.codec) from exc
            self._codec = item.codec
            self.had_key = False
            self._meta.clear()
        pts = self._pts
        self._pts += 1
        packet = av.Packet(item.data)
        packet.pts = pts
        packet.time_base = _time_base(item.clock_rate)
        self._meta[pts] = item
        try:
            frames = self._ctx.decode(packet)
        except av.FFmpegError:
            self._meta.pop(pts, None)
            raise
        self.had_key = self.had_key or item.keyframe
        meta = self._meta
        out = [(f, meta.pop(f.pts, item) if f.pts is not None else item) for f in frames]
        if len(meta) > 64:  # the decoder swallowed packets: don't leak their metadata
            for k in sorted(meta)[:-16]:
                del meta[k]
        return out


class TrackDecoder:
    def __init__(
        self,
        source: FrameSource,
        *,
        thread_count: int = 1,
        video_queue: int = 64,
        audio_queue: int = 50,
        max_queue_delay: float = 0.3,
        keyframe_wait: float | None = 1.0,
        threaded: bool | None = None,
    ) -> None:
        self._source = weakref.ref(source)
        self.kind: MediaKind = source.kind
        self._threaded = self.kind == "video" if threaded is None else threaded
        self._inline: _Decoding | None = None  # the unthreaded decoder, while running
        self._thread_count = thread_count
        self._capacity = video_queue if self.kind == "video" else audio_queue
        self._max_queue_delay = max_queue_delay
        self._queue: _Queue = collections.deque()
        self._cond = threading.Condition()
        self._sinks: list[Sink] = []
        self._sinks_lock = threading.Lock()
        self._end_callbacks: dict[int, Callable[[], None]] = {}
        self._remove_close: Callable[[], None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._keyframe_wait = keyframe_wait
        self._need_key = True
        self._need_key_since = time.monotonic()
        self._key_wait_timeouts = 0
        self._decoded = 0
        self._errors = 0
        self._failing = False  # the last packet failed: further failures are only counted
        self._dropped = 0
        self._skipped = 0
        self._decode_time = 0.0

    # -- sinks ---------------------------------------------------------------------------
    def add_sink(self, sink: Sink, on_end: Callable[[], None] | None = None) -> Callable[[], None]:
        """Deliver decoded frames to ``sink`` (on the decoder thread); returns the remover.

        ``on_end()`` is called (on the event loop) when the source closes; at once, with
        nothing started, if it already did.
        """
        source = self._source()
        if source is None or getattr(source, "closed", False):
            if on_end is not None:
                on_end()
            return _nothing_to_remove
        with self._sinks_lock:
            self._sinks.append(sink)
            if on_end is not None:
                self._end_callbacks[id(sink)] = on_end
            first = len(self._sinks) == 1
        if first:
            self._start()

        def remove() -> None:
            with self._sinks_lock:
                with contextlib.suppress(ValueError):
                    self._sinks.remove(sink)
                self._end_callbacks.pop(id(sink), None)
                last = not self._sinks
            if last:
                self._stop()

        return remove

    def _source_closed(self) -> None:
        with self._sinks_lock:
            callbacks = list(self._end_callbacks.values())
        for cb in callbacks:  # streams close themselves, which removes their sinks
            try:
                cb()
            except Exception:
                logger.exception("end-of-stream callback failed")
        self._stop()

    @property
    def source(self) -> FrameSource | None:
        """The source decoded (``None`` once it was freed)."""
        return self._source()

    @property
    def running(self) -> bool:
        return self._thread is not None or self._inline is not None

    @property
    def threaded(self) -> bool:
        """Decodes on a thread of its own (else where the packets arrive: the event loop)."""
        return self._threaded

    def stats(self) -> DecoderStats:
        return DecoderStats(
            kind=self.kind,
            running=self.running,
            decoded=self._decoded,
            decode_errors=self._errors,
            dropped_behind=self._dropped,
            skipped_to_keyframe=self._skipped,
            decode_time_avg_ms=1000 * self._decode_time / self._decoded if self._decoded else 0.0,
            keyframe_wait_timeouts=self._key_wait_timeouts,
        )

    # -- lifecycle -----------------------------------------------------------------------
    def _request_keyframe(self) -> None:
        source = self._source()
        if source is not None:
            source.request_keyframe()

    def _start(self) -> None:
        source = self._source()
        if self.running or source is None:
            return
        self._need_key = self.kind == "video"
        if self._threaded:
            # A fresh queue per thread: a stopping thread must not eat its successor's input.
            self._queue = collections.deque()
            self._cond = threading.Condition()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._queue, self._cond),
                name=f"avatar-rtc-{self.kind}-decoder",
                daemon=True,
            )
            self._thread.start()
            self._unsubscribe = source.subscribe(self._on_encoded)
        else:
            self._inline = _Decoding(self._thread_count)
            self._unsubscribe = source.subscribe(self._decode_inline)
        on_close = getattr(source, "on_close", None)
        if callable(on_close):
            self._remove_close = on_close(self._source_closed)
        if self.kind == "video" and getattr(source, "frames_released", 1) > 0:
            source.request_keyframe()  # joining mid-stream: don't wait for the next one

    def _stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._remove_close is not None:
            self._remove_close()
            self._remove_close = None
        self._inline = None
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._cond:
            self._queue.clear()
            self._queue.append(None)
            self._cond.notify()
        # Not joined: this may run on the event loop and a decode can take a few ms; the
        # thread exits right after its current frame.

    # -- input (event-loop thread) -------------------------------------------------------
    def _on_encoded(self, frame: EncodedFrame) -> None:
        now = time.monotonic()
        with self._cond:
            queue = self._queue
            if self.kind == "video":
                oldest = queue[0] if queue else None
                if len(queue) >= self._capacity or (
                    oldest is not None and now - oldest[0] > self._max_queue_delay
                ):
                    self._dropped += len(queue)
                    queue.clear()
                    self._wait_for_keyframe()
                    logger.warning("video decoder behind: dropping to the next keyframe")
                    self._request_keyframe()
            elif len(queue) >= self._capacity:
                queue.popleft()
                self._dropped += 1
            queue.append((now, frame))
            self._cond.notify()

    def _decode_inline(self, frame: EncodedFrame) -> None:
        decoding = self._inline
        if decoding is None:
            return
        if self.kind == "video" and self._need_key:
            if not frame.keyframe and not (decoding.had_key and self._waited_too_long()):
                self._skipped += 1
                return
            self._need_key = False
        self._decode(decoding, frame)

    # -- decoder thread ------------------------------------------------------------------
    def _run(self, queue: _Queue, cond: threading.Condition) -> None:
        decoding = _Decoding(self._thread_count)
        while True:
            with cond:
                while not queue:
                    cond.wait()
                queued = queue.popleft()
                item = None if queued is None else queued[1]
                if item is not None and self.kind == "video" and self._need_key:
                    if not item.keyframe and not (decoding.had_key and self._waited_too_long()):
                        self._skipped += 1
                        continue
                    self._need_key = False
            if item is None:
                break
            self._decode(decoding, item, cond)
        logger.debug("%s decoder thread finished", self.kind)

    def _decode(
        self, decoding: _Decoding, item: EncodedFrame, cond: threading.Condition | None = None
    ) -> None:
        """Decode ``item`` and deliver its frames (``cond``: the thread's, None inline)."""
        t0 = time.perf_counter()
        try:
            frames = decoding.decode(item)
        except _NoDecoder:
            self._errors += 1
            if not self._failing:  # once, not for every packet that follows
                logger.exception("cannot create a %s decoder", item.codec)
            self._failing = True
            return
        except av.FFmpegError as exc:
            self._errors += 1
            if self.kind == "audio":  # the next packet decodes on its own
                if not self._failing:  # 50 packets a second: log a run of errors once
                    logger.warning("%s decode error (%s); more are only counted", item.codec, exc)
                self._failing = True
                return
            logger.warning("%s decode error (%s); requesting a keyframe", item.codec, exc)
            if self._is_current():
                with cond or contextlib.nullcontext():
                    self._wait_for_keyframe()
                self._request_keyframe()
            return
        self._failing = False
        self._decode_time += time.perf_counter() - t0
        now = time.monotonic()
        for f, encoded in frames:
            self._decoded += 1
            self._deliver(DecodedFrame(f, encoded, now))

    def _wait_for_keyframe(self) -> None:
        """Skip to the next keyframe (called with the condition's lock held, or before the
        thread starts)."""
        if not self._need_key:
            self._need_key_since = time.monotonic()
        self._need_key = True

    def _waited_too_long(self) -> bool:
        """The keyframe skipped to is overdue: conceal instead (lock held)."""
        wait = self._keyframe_wait
        if wait is None or time.monotonic() - self._need_key_since < wait:
            return False
        self._key_wait_timeouts += 1
        logger.warning("video decoder: no keyframe for %.1f s; decoding without one", wait)
        return True

    def _is_current(self) -> bool:
        """False in a thread that was stopped (and maybe replaced): it must not act for its
        successor. Inline decoding is current while it runs."""
        return self._inline is not None or threading.current_thread() is self._thread

    def _deliver(self, frame: DecodedFrame) -> None:
        with self._sinks_lock:
            if not self._is_current():
                return  # a stopped thread's last frame: the sinks now belong to its successor
            sinks = tuple(self._sinks)
        for sink in sinks:
            try:
                sink(frame)
            except Exception:
                logger.exception("decoded-frame sink failed")


def _nothing_to_remove() -> None:
    """The remover of a sink that was never added (its source had closed)."""
