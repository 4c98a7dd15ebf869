"""SyncAvatarSession: :class:`~avatar_rtc.session.AvatarSession` for plain scripts and notebooks.

The session (and the whole WebRTC stack) runs on an event loop in a daemon thread; every
method blocks until its coroutine finished there::

    with SyncAvatarSession(SessionOptions(avatar_id="...")) as avatar:
        avatar.say("Hello")
        for frame in avatar.iter_video(VideoFormat(size=(256, 256))):
            ...  # frame.array is a numpy image; `break` closes the stream

Event handlers (``on``) run on that loop thread: keep them short. A session that is never
closed explicitly is closed when the object is garbage-collected or the interpreter exits,
so the service session is ended in any case.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from .api.client import ControlClient
from .errors import AvatarRTCError
from .media.formats import AudioFormat, VideoFormat
from .media.frames import AudioFrame, VideoFrame
from .media.streams import AudioStream, Policy, VideoStream
from .media.sync_iter import BackgroundLoop, FrameIterator
from .options import SessionOptions
from .record.options import RecordOptions
from .record.recorder import Recorder
from .rtc.candidate_pair import SelectedPair
from .session import (
    AvatarSession,
    EventHandler,
    EventName,
    SessionClosedError,
    SessionStateError,
)
from .session_stats import SessionState, SessionStats, SessionTimings

__all__ = ["SessionFrames", "SyncAvatarSession"]

R = TypeVar("R")
F = TypeVar("F", bound=VideoFrame | AudioFrame)

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 30.0


class SessionFrames(Generic[F]):
    """Blocking iterator of a session's frames: ends once the session is closed, and raises
    the session's :attr:`~SyncAvatarSession.error` once its media ended for good."""

    def __init__(self, inner: FrameIterator[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop

    @property
    def stream(self) -> VideoStream | AudioStream:
        return self._inner.stream  # type: ignore[return-value]

    def __iter__(self) -> Iterator[F]:
        return self

    def __next__(self) -> F:
        if self._loop.is_closed():
            self.close()
            raise StopIteration
        try:
            return cast(F, next(self._inner))
        except (RuntimeError, concurrent.futures.CancelledError):
            # The loop stopped under us: the session was closed meanwhile.
            if self._loop.is_closed() or not self._loop.is_running():
                self.close()
                raise StopIteration from None
            raise

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> SessionFrames[F]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finalize(session: AvatarSession, bg: BackgroundLoop) -> None:
    """Close the session and stop the loop thread (at close, garbage collection or exit)."""
    try:
        # (NEW too: streams and recorders opened before start() close with the session)
        if session.state not in (SessionState.ENDED, SessionState.FAILED):
            try:
                bg.run(session.close(), timeout=_CLOSE_TIMEOUT)
            except Exception as exc:
                # At exit or garbage collection nobody can catch it: the service session
                # may outlive us, so say so rather than stay silent.
                logger.warning("closing %r failed: %s", session, exc)
    finally:
        bg.close()


class SyncAvatarSession:
    """Blocking facade of :class:`AvatarSession`; same arguments (the same
    :class:`SessionOptions`), same methods and errors (``live`` and ``connection`` belong to the
    loop: reach them through :attr:`session`, on :attr:`loop`).

    After :meth:`close` the loop thread is gone: the methods raise
    :class:`~avatar_rtc.SessionClosedError` (as the async session's do), ``stats()`` still
    answers.
    """

    def __init__(
        self, options: SessionOptions | None = None, *, client: ControlClient | None = None
    ) -> None:
        self._bg = BackgroundLoop(name="avatar-rtc-session")
        try:
            # Created on the loop: asyncio objects inside bind to it.
            self._session: AvatarSession = self._bg.run(_create(options, client))
        except BaseException:
            self._bg.close()
            raise
        self._finalizer = weakref.finalize(self, _finalize, self._session, self._bg)
        self._closer: threading.Thread | None = None  # a close() called on the loop thread

    # --- plumbing -----------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        if self._bg.closed:
            coro.close()  # never awaited, on purpose
            raise SessionClosedError(f"the session is {self._session.state.value}")
        if self._bg.on_loop_thread():  # an event handler: waiting here would block the loop
            coro.close()
            raise SessionStateError(
                "a SyncAvatarSession method called from an event handler (the session's loop "
                "thread) would wait for that loop; there, schedule the coroutine of "
                "avatar.session instead (e.g. asyncio.ensure_future(avatar.session.say(...)))"
            )
        return self._bg.run(coro, timeout)

    @property
    def session(self) -> AvatarSession:
        """The underlying async session (use it only on :attr:`loop`)."""
        return self._session

    @property
    def options(self) -> SessionOptions:
        return self._session.options

    @property
    def loop(self) -> BackgroundLoop:
        """The event loop thread the session runs on: ``loop.run(coro)`` runs a coroutine of
        your own there (e.g. a call on ``session.live.client``) and returns its result."""
        return self._bg

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> SyncAvatarSession:
        """Create the session and connect its media (:meth:`AvatarSession.start`)."""
        try:
            self._run(self._session.start())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the session (streams, recorders, WHEP, end) and stop the loop thread.

        From an event handler (on the loop thread, which this must not block) it starts
        closing and returns at once: the session closes once the handler has returned, and a
        later ``close()`` from another thread waits for that.
        """
        if self._bg.on_loop_thread():
            if self._closer is None:
                # Not a daemon (it would be, like the loop thread): a script that ends right
                # after the handler must still end the service session.
                self._closer = threading.Thread(
                    target=self._finalizer, name="avatar-rtc-close", daemon=False
                )
                self._closer.start()
            return
        if self._closer is not None:
            self._closer.join()
        self._finalizer()

    def __enter__(self) -> SyncAvatarSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        error = self._session.error
        if exc_type is None and error is not None and not self._session.error_raised:
            raise error  # (see AvatarSession.error; raised once here, at most)

    # --- state --------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Where the session is in its life (:class:`SessionState`)."""
        return self._session.state

    @property
    def error(self) -> AvatarRTCError | None:
        """The error that ended the media for good (see :attr:`AvatarSession.error`)."""
        return self._session.error

    @property
    def session_id(self) -> str | None:
        """The service's session id (``None`` before start and in bare WHEP mode)."""
        return self._session.session_id

    @property
    def whep_url(self) -> str | None:
        """The WHEP endpoint the media comes from (``None`` before start)."""
        return self._session.whep_url

    @property
    def timings(self) -> SessionTimings:
        """Durations of the start-up phases, seconds (:class:`SessionTimings`)."""
        return self._session.timings

    @property
    def selected_pair(self) -> SelectedPair | None:
        """The ICE candidate pair carrying the media (relay, TURN transport), once connected."""
        return self._session.selected_pair

    @property
    def speaking(self) -> bool:
        """The avatar is speaking now (the speech detector's view; needs ``detect_speech``)."""
        return self._session.speaking

    def stats(self) -> SessionStats:
        """A snapshot of everything the session counts (:class:`SessionStats`)."""
        if self._bg.closed:  # nothing runs on the session any more: read it here
            return self._session.stats()
        return self._run(_call(self._session.stats))

    def on(self, event: EventName | str, handler: EventHandler) -> Callable[[], None]:
        """``handler(SessionEvent)`` runs on the session's loop thread: keep it short. There
        only :meth:`close` of this class may be called (it starts closing and returns); the
        other methods would wait for that thread and raise :class:`SessionStateError`."""
        return self._session.on(event, handler)

    # --- speech -------------------------------------------------------------------------

    def say(self, text: str) -> str:
        """Make the avatar say ``text``; returns the turn id (:meth:`AvatarSession.say`)."""
        return self._run(self._session.say(text))

    def say_audio(self, audio: str | Path | bytes, *, duration: float | None = None) -> str:
        """Make the avatar say an audio file (MP3); returns the turn id
        (:meth:`AvatarSession.say_audio`)."""
        return self._run(self._session.say_audio(audio, duration=duration))

    def interrupt(self) -> None:
        """Stop the avatar's current speech (:meth:`AvatarSession.interrupt`)."""
        self._run(self._session.interrupt())

    def wait_first_frame(self, timeout: float | None = 20.0) -> VideoFrame:
        """The first decoded video frame (``TimeoutError`` after ``timeout`` seconds)."""
        return self._run(self._session.wait_first_frame(timeout))

    def wait_idle(
        self, timeout: float | None = 60.0, *, start_grace: float = 5.0, quiet: float = 0.5
    ) -> None:
        """Until the avatar has nothing left to say (``TimeoutError`` after ``timeout``;
        :meth:`AvatarSession.wait_idle`)."""
        self._run(self._session.wait_idle(timeout, start_grace=start_grace, quiet=quiet))

    # --- media --------------------------------------------------------------------------

    def video(
        self,
        format: VideoFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
    ) -> VideoStream:
        """The async stream (lives on :attr:`loop`); plain code wants :meth:`iter_video`."""
        return self._run(_call(self._session.video, format, capacity=capacity, policy=policy))

    def audio(
        self,
        format: AudioFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
    ) -> AudioStream:
        """The async stream (lives on :attr:`loop`); plain code wants :meth:`iter_audio`."""
        return self._run(_call(self._session.audio, format, capacity=capacity, policy=policy))

    def iter_video(
        self,
        format: VideoFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
        timeout: float | None = 10.0,
    ) -> SessionFrames[VideoFrame]:
        """Blocking iterator of video frames; ends when the session closes, raises the
        session's :attr:`error` once the media ended for good.

        ``timeout`` bounds the wait for each frame (``TimeoutError``). ``for f in
        avatar.iter_video(): ... break`` stops the stream when the loop drops the iterator;
        one kept in a variable stops with ``close()`` or at the end of ``with
        avatar.iter_video() as frames:`` (until then its stream keeps filling).
        """
        return self._frames(self.video(format, capacity=capacity, policy=policy), timeout)

    def iter_audio(
        self,
        format: AudioFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
        timeout: float | None = 10.0,
    ) -> SessionFrames[AudioFrame]:
        """Blocking iterator of fixed-size PCM frames; ends as :meth:`iter_video` does."""
        return self._frames(self.audio(format, capacity=capacity, policy=policy), timeout)

    def _frames(
        self, stream: VideoStream | AudioStream, timeout: float | None
    ) -> SessionFrames[Any]:
        return SessionFrames(FrameIterator(stream, self._bg.loop, timeout), self._bg.loop)

    def record(
        self, path: str | os.PathLike[str], options: RecordOptions | None = None
    ) -> Recorder:
        """Record to ``path`` (.mp4/.mkv/.webm): :meth:`AvatarSession.record`."""
        return self._run(_call(self._session.record, path, options))


async def _create(options: SessionOptions | None, client: ControlClient | None) -> AvatarSession:
    return AvatarSession(options, client=client)


async def _call(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run a plain function on the loop thread (streams bind to the running loop)."""
    return fn(*args, **kwargs)
