"""Blocking bridge for plain synchronous code (no asyncio in user code).

:class:`BackgroundLoop` runs an asyncio event loop in a daemon thread; the whole WebRTC stack
lives there. :func:`iter_video` / :func:`iter_audio` create a stream on that loop and return a
:class:`FrameIterator`, a normal blocking iterator. Leaving a ``for`` loop with ``break`` (or
``close()``, ``with``, garbage collection) closes the stream, which stops decoding when it was
the last consumer of its track.

    with BackgroundLoop() as bg:
        session = bg.run(AvatarSession(...).start())  # any coroutine, run on that loop
        for frame in iter_video(session.video_pipeline, VideoFormat(size=(320, 240)), loop=bg):
            img = frame.array                         # numpy, HxWx3 uint8
            ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from .. import event_loop
from ..rtc.encoded_frame import FrameSource
from .decoder import TrackDecoder
from .formats import AudioFormat, VideoFormat
from .frames import AudioFrame, VideoFrame
from .streams import AudioStream, Policy, VideoStream, _Stream

__all__ = ["BackgroundLoop", "FrameIterator", "iter_audio", "iter_video"]

R = TypeVar("R")
LOOP_GRACE = 5.0  # seconds past a timeout the waiting thread still gives the loop
F = TypeVar("F", VideoFrame, AudioFrame)


class BackgroundLoop:
    """An asyncio event loop running in a daemon thread; ``run(coro)`` blocks for the result."""

    def __init__(self, *, name: str = "avatar-rtc-loop") -> None:
        self.loop = event_loop.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        self._closed = False

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()
        # cancel what is left, then close
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def on_loop_thread(self) -> bool:
        """Whether the caller runs on the loop's own thread (where blocking would deadlock)."""
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """Run ``coro`` on the background loop and wait for its result."""
        if self.on_loop_thread():
            coro.close()  # never awaited, on purpose
            raise RuntimeError("BackgroundLoop.run() called from its own loop thread")
        return _run_on(self.loop, coro, timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_on(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, R], timeout: float | None
) -> R:
    """``coro``'s result, run on ``loop``; ``TimeoutError`` after ``timeout`` seconds.

    The timeout runs out on the loop, where the coroutine decides whether it finished or gave
    up: a frame a stream took off its queue at the deadline is returned or given back, not
    dropped between the threads (cancelling the thread-side future then discards a result
    the loop already produced). ``LOOP_GRACE`` later, a loop that does not answer at all.
    """
    future = asyncio.run_coroutine_threadsafe(_bounded(coro, timeout), loop)
    try:
        finished = _wait_done(future, None if timeout is None else timeout + LOOP_GRACE)
    except BaseException:  # Ctrl-C: the work on the loop stops with the wait
        future.cancel()
        raise
    if not finished:
        future.cancel()
        raise TimeoutError(f"no result within {timeout} s (the event loop does not answer)")
    return future.result()


async def _bounded(coro: Coroutine[Any, Any, R], seconds: float | None) -> R:
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await coro
    except TimeoutError:
        if deadline.expired():
            raise TimeoutError(f"no result within {seconds} s") from None
        raise  # the coroutine's own


def _wait_done(future: concurrent.futures.Future[Any], timeout: float | None) -> bool:
    """Whether ``future`` finished within ``timeout`` s, waited for on a plain lock.

    Not ``future.result(timeout)``: a Ctrl-C that lands inside ``threading.Condition.wait``
    just after it released its lock leaves it released, and the ``with`` around the wait then
    raises ``RuntimeError: cannot release un-acquired lock`` instead of the
    ``KeyboardInterrupt`` (seen under Python 3.12 in CI). ``Lock.acquire`` is interrupted
    cleanly.
    """
    done = threading.Lock()
    done.acquire()
    future.add_done_callback(lambda _: done.release())
    return done.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


class FrameIterator(Generic[F]):
    """Blocking iterator over a stream living on an event loop in another thread."""

    def __init__(
        self, stream: _Stream[F], loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> None:
        self._stream: _Stream[F] = stream
        self._loop = loop
        self._timeout = timeout
        self._closed = False

    @property
    def stream(self) -> _Stream[F]:
        return self._stream

    def __iter__(self) -> Iterator[F]:
        return self

    def __next__(self) -> F:
        if self._closed:
            raise StopIteration
        try:
            return _run_on(self._loop, self._stream.__anext__(), self._timeout)
        except StopAsyncIteration:
            self._closed = True
            raise StopIteration from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stream.close)

    def __enter__(self) -> FrameIterator[F]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # ``break`` out of a for loop drops the iterator: stop decoding for it.
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


LoopLike = BackgroundLoop | asyncio.AbstractEventLoop


def _loop_of(
    source: FrameSource | TrackDecoder, loop: LoopLike | None
) -> asyncio.AbstractEventLoop:
    """The loop the source lives on: given, else the pipeline's own (running elsewhere)."""
    if isinstance(loop, BackgroundLoop):
        return loop.loop
    if loop is not None:
        return loop
    inner = source.source if isinstance(source, TrackDecoder) else source
    found = getattr(inner, "loop", None)
    if not isinstance(found, asyncio.AbstractEventLoop) or not found.is_running():
        raise ValueError("pass loop=: the event loop (thread) the source runs on")
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is found:  # blocking there would deadlock the loop
        raise RuntimeError("sync iterators cannot be used on the source's own loop")
    return found


def iter_video(
    source: FrameSource | TrackDecoder,
    format: VideoFormat | None = None,
    *,
    loop: LoopLike | None = None,
    capacity: int | None = None,
    policy: Policy | None = None,
    timeout: float | None = None,
) -> FrameIterator[VideoFrame]:
    """Blocking iterator of :class:`VideoFrame` (``frame.array`` is the numpy image).

    ``format``, ``capacity`` and ``policy`` as for :class:`VideoStream`; ``timeout``
    (seconds) bounds the wait for each frame (``TimeoutError``).
    """
    return _iterate(
        lambda: VideoStream(source, format, capacity=capacity, policy=policy), source, loop, timeout
    )


def iter_audio(
    source: FrameSource | TrackDecoder,
    format: AudioFormat | None = None,
    *,
    loop: LoopLike | None = None,
    capacity: int | None = None,
    policy: Policy | None = None,
    timeout: float | None = None,
) -> FrameIterator[AudioFrame]:
    """Blocking iterator of :class:`AudioFrame` (``frame.data`` is (samples, channels)).

    ``format``, ``capacity`` and ``policy`` as for :class:`AudioStream`.
    """
    return _iterate(
        lambda: AudioStream(source, format, capacity=capacity, policy=policy), source, loop, timeout
    )


def _iterate(
    make: Callable[[], _Stream[F]],
    source: FrameSource | TrackDecoder,
    loop: LoopLike | None,
    timeout: float | None,
) -> FrameIterator[F]:
    """A blocking iterator over the stream ``make()`` creates on the source's loop."""
    bg = _loop_of(source, loop)

    async def on_loop() -> _Stream[F]:  # streams bind to the running loop
        return make()

    return FrameIterator(_run_on(bg, on_loop(), None), bg, timeout)
