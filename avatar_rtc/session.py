"""AvatarSession: the Control API, the WebRTC connection and the decoded media in one object.

::

    options = SessionOptions(avatar_id="...", ice=IceOptions(...))
    async with AvatarSession(options) as avatar:
        await avatar.say("Hello!")
        async with avatar.video(VideoFormat(size=(256, 256))) as stream:
            async for frame in stream:
                model(frame.array)

``start()`` (or ``async with``) creates the service session, inits the client, starts the
keep-alive and connects WHEP; ``close()`` undoes all of it in reverse (streams, recorders,
WHEP DELETE, ``end``) on every way out: normal exit, exception, task cancellation. What to
connect to and how is a :class:`~avatar_rtc.options.SessionOptions`; with its ``whep_url`` the
session plays a bare WHEP endpoint and the Control API is not used.

Events (``on(name, handler)``; handlers run on the event loop and get one
:class:`SessionEvent`): ``state``, ``connected``, ``first_frame``, ``speaking_started``,
``speaking_ended``, ``reconnecting``, ``reconnected``, ``disconnected``, ``ended``, ``error``.

Media lost (no RTP/RTCP for ``options.reconnect.media_timeout`` s, ICE failed, DTLS closed)
is brought back by a :class:`~avatar_rtc.rtc.reconnect.Reconnector`: state ``reconnecting``
and the ``reconnecting`` event, then ``reconnected`` (state ``connected``) with the outage's
length. Streams and recordings carry on across it: the same iterators keep yielding, the same
file keeps growing, with the gap in their timestamps. When it cannot be brought back (attempts
exhausted: :class:`~avatar_rtc.errors.MediaLostError`; the sender gone, its WHEP server
refusing connections: :class:`~avatar_rtc.errors.ServiceUnreachableError`, within about 3 s
of the loss; the service session gone: :class:`~avatar_rtc.errors.WhepNotFoundError`):
``disconnected``, then ``error`` with the typed exception, and the streams end. With
``ReconnectPolicy(new_session_on_not_found=True)`` a service session gone is replaced instead:
a new one for the same avatar and voice (its ``session_id`` differs), the media connected to
it, the ``reconnected`` outage's ``new_session`` set; streams and recordings carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiortc import RTCRtpReceiver

from .api.client import ControlClient
from .api.models import TurnConfig
from .api.session_scope import LiveSession
from .errors import ApiError, AvatarRTCError, ConfigurationError, RequestTimeoutError, ServerError
from .media.decoder import DecodedFrame, TrackDecoder, call_from_sink, decoder_for
from .media.formats import AudioFormat, VideoFormat
from .media.frames import VideoFrame
from .media.playout import PlayoutSource
from .media.streams import AudioStream, Policy, VideoStream
from .options import SessionOptions
from .record.options import RecordOptions
from .record.recorder import Recorder
from .rtc.candidate_pair import SelectedPair
from .rtc.clock import AvClock
from .rtc.connection import MediaConnection
from .rtc.encoded_frame import EncodedFrame, FrameSource
from .rtc.ice_options import IceOptions
from .rtc.receiver import ReceivePipeline
from .rtc.reconnect import Outage, Reconnector, ReconnectStats
from .session_stats import KeepAliveStats, SessionState, SessionStats, SessionTimings
from .speech_detector import SpeechDetector, SpeechEvent

__all__ = [
    "ENV_AVATAR_ID",
    "ENV_VOICE_ID",
    "EVENTS",
    "AvatarSession",
    "EventName",
    "SessionClosedError",
    "SessionEvent",
]

logger = logging.getLogger(__name__)

ENV_AVATAR_ID = "AVATAR_ID"
ENV_VOICE_ID = "AVATAR_VOICE_ID"

EventName = Literal[
    "state",
    "connected",
    "first_frame",
    "speaking_started",
    "speaking_ended",
    "reconnecting",
    "reconnected",
    "disconnected",
    "ended",
    "error",
]
EVENTS: frozenset[str] = frozenset(EventName.__args__)  # type: ignore[attr-defined]


_CLOSED = frozenset({SessionState.CLOSING, SessionState.ENDED, SessionState.FAILED})


class SessionStateError(AvatarRTCError, RuntimeError):
    """The session's state does not allow the call: ``say()`` before ``start()``, say, or
    ``start()`` twice."""


class SessionClosedError(SessionStateError):
    """The session was closed (or closed itself) before the operation could complete."""


@dataclass(frozen=True)
class SessionEvent:
    """What an event handler receives.

    ``data``: the new :class:`SessionState` (``state``), the first :class:`VideoFrame`
    (``first_frame``), a :class:`SpeechEvent` (``speaking_*``), an
    :class:`~avatar_rtc.rtc.reconnect.Outage` (``reconnecting``; ``reconnected``, with its
    ``seconds``), the reason as a string (``disconnected``), the exception (``error``);
    ``None`` otherwise.
    """

    name: EventName
    session: AvatarSession
    time: float  # time.monotonic()
    data: Any = None


EventHandler = Callable[[SessionEvent], object]


class AvatarSession:
    """One avatar session: see the module docstring.

    ``options``: what to connect to and how (:class:`SessionOptions`; default: the service,
    from the environment). ``client``: a ready :class:`ControlClient` to use instead of one
    built from ``options.api_url``/``options.ks`` (service mode only).
    """

    def __init__(
        self, options: SessionOptions | None = None, *, client: ControlClient | None = None
    ) -> None:
        self._options = options if options is not None else SessionOptions()
        if self._options.whep_url is not None and client is not None:
            raise ConfigurationError("whep_url (bare WHEP mode) excludes client")
        self._client = client

        self.clock = AvClock()
        read_interval = self._options.read_interval
        self.video_pipeline = ReceivePipeline(
            "video",
            clock=self.clock,
            keyframe_wait=self._options.keyframe_wait,
            read_interval=read_interval,
        )
        self.audio_pipeline = ReceivePipeline(
            "audio", clock=self.clock, read_interval=read_interval
        )
        # What the video decoder (every VideoStream) reads: the pipeline, or a playout stage.
        self._playout: PlayoutSource | None = None
        if self._options.max_playout_delay is not None:
            delay = self._options.max_playout_delay
            self._playout = PlayoutSource(self.video_pipeline, max_delay=delay)
        self._video_source: FrameSource = self._playout or self.video_pipeline
        # The video's one decoder (every stream shares it), made now so it gets the option.
        threaded = not self._options.decode_video_on_loop
        decoder_for(self._video_source, functools.partial(TrackDecoder, threaded=threaded))
        self.speech = SpeechDetector()

        self._state = SessionState.NEW
        self._handlers: dict[str, list[EventHandler]] = {}
        # Tasks of coroutine handlers: the loop keeps only weak references to tasks.
        self._handler_tasks: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack = contextlib.AsyncExitStack()
        self._live: LiveSession | None = None
        self._live_stack: contextlib.AsyncExitStack | None = None  # the current _live's
        self._media_target: tuple[str, IceOptions] | None = None  # WHEP URL and ICE to use
        self._link: Reconnector | None = None
        self._closing: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._streams: list[VideoStream | AudioStream] = []
        self._closed_stream_drops = 0
        self._recorders: list[Recorder] = []
        self._cleanups: list[Callable[[], None]] = []
        self._errors: list[str] = []
        self._error: AvatarRTCError | None = None  # the media ended for good (_lost_for_good)
        self._error_raised = False  # a stream raised it to its reader already
        self._error_tb: TracebackType | None = None  # its traceback where it was made
        # time.monotonic() stamps behind `timings`
        self._t_start: float | None = None
        self._session_seconds: float | None = None
        self._t_keyframe: float | None = None
        self._t_decoded: float | None = None
        self._first_frame: asyncio.Future[VideoFrame] | None = None
        self._got_first_frame = False  # decoder thread flag (the future lives on the loop)
        self._unsub_keyframe: Callable[[], None] | None = None
        self._remove_first_sink: Callable[[], None] | None = None
        self._last_say: float | None = None
        self._voice_id: str | None = None  # what the session was created with
        self._last_speech_start: float | None = None  # monotonic, when the event was handled
        self._last_speech_end: float | None = None
        self._last_audio: float | None = None  # monotonic, the last audio the detector got
        self._speech_changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"AvatarSession({self.session_id!r}, state={self._state.value})"

    # --- properties ---------------------------------------------------------------------

    @property
    def options(self) -> SessionOptions:
        """What the session connects to and how (as given; frozen)."""
        return self._options

    @property
    def state(self) -> SessionState:
        """Where the session is in its life (:class:`SessionState`; ``state`` events)."""
        return self._state

    @property
    def error(self) -> AvatarRTCError | None:
        """The typed error that ended the media for good (lost and not brought back:
        :class:`~avatar_rtc.errors.MediaLostError`; the service session gone:
        :class:`~avatar_rtc.errors.SessionNotFoundError` and kin), ``None`` otherwise. The
        streams raise it once their queued frames are out, and ``async with`` raises it when
        its block ends without an exception of its own, unless a stream raised it already (a
        reader that caught it has seen it): a loss never looks like the end of a job.
        (``close()`` does not raise it.)"""
        return self._error

    @property
    def error_raised(self) -> bool:
        """A stream raised :attr:`error` to its reader already (then leaving the session's
        block does not raise it again)."""
        return self._error_raised

    @property
    def session_id(self) -> str | None:
        """The service's session id (``None`` before start and in bare WHEP mode; a renewal,
        ``new_session_on_not_found``, changes it)."""
        return self._live.session_id if self._live is not None else None

    @property
    def whep_url(self) -> str | None:
        if self._live is not None:
            return self._live.client_config.whep_url
        return self._options.whep_url

    @property
    def live(self) -> LiveSession | None:
        """The Control API session (``None`` in bare WHEP mode or before ``start``)."""
        return self._live

    @property
    def connection(self) -> MediaConnection | None:
        """The current media connection (a reconnect replaces it)."""
        return self._link.connection if self._link is not None else None

    @property
    def selected_pair(self) -> SelectedPair | None:
        connection = self.connection
        return connection.selected_pair() if connection is not None else None

    @property
    def speaking(self) -> bool:
        """The avatar is speaking now (the speech detector's view; needs ``detect_speech``).
        Not while no audio has come for the reconnect policy's ``media_timeout`` (2 s) and
        the session is not reconnecting: a voice cut off for good leaves the detector
        speaking, nothing comes to end it (and no ``speaking_ended`` is emitted for that)."""
        return self.speech.speaking and not self._audio_stopped()

    def _media_stalled(self) -> bool:
        """No video RTP or sender report for the media timeout: the audio stopped with it, a
        loss being detected, not the end of a turn."""
        last = self.video_pipeline.last_activity
        return last is not None and time.monotonic() - last >= self._options.reconnect.media_timeout

    def _audio_stopped(self) -> bool:
        last = self._last_audio
        if last is None or self._state is SessionState.RECONNECTING:
            return False  # (a reconnect brings the audio back, or ends the session)
        return time.monotonic() - last >= self._options.reconnect.media_timeout

    @property
    def timings(self) -> SessionTimings:
        """Of the start-up (a reconnect's new connection does not change them)."""
        first = self._link.first_connection if self._link is not None else None
        conn = first.timings if first is not None else None
        started = conn.started if conn else None
        answered = conn.answer_received if conn else None
        connected = conn.dtls_connected if conn else None
        return SessionTimings(
            session=self._session_seconds,
            offer_answer=_span(started, answered),
            ice_dtls=_span(answered, connected),
            first_keyframe=_span(connected, self._t_keyframe),
            first_frame=_span(self._t_keyframe, self._t_decoded),
            total=_span(self._t_start, self._t_decoded),
        )

    # --- events -------------------------------------------------------------------------

    def on(self, event: EventName | str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(SessionEvent)`` on every ``event``; returns the remover."""
        if event not in EVENTS:
            raise ConfigurationError(f"unknown event {event!r}; one of {sorted(EVENTS)}")
        handlers = self._handlers.setdefault(event, [])
        handlers.append(handler)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                handlers.remove(handler)

        return remove

    def _emit(self, name: EventName, data: Any = None) -> None:
        event = SessionEvent(name, self, time.monotonic(), data)
        for handler in tuple(self._handlers.get(name, ())):
            try:
                result = handler(event)
                if asyncio.iscoroutine(result) and self._loop is not None:
                    task = self._loop.create_task(result)
                    self._handler_tasks.add(task)
                    task.add_done_callback(functools.partial(self._handler_done, name))
            except Exception:
                logger.exception("%s event handler failed", name)

    def _handler_done(self, name: str, task: asyncio.Task[object]) -> None:
        self._handler_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s event handler failed", name, exc_info=task.exception())

    def _set_state(self, state: SessionState) -> None:
        if state is self._state:
            return
        logger.debug("AvatarSession %s -> %s", self._state.value, state.value)
        self._state = state
        self._emit("state", state)

    def _call_on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """From a decoder sink: run ``fn`` on the session's loop (dropped once it closed)."""
        if self._loop is not None:
            call_from_sink(self._loop, fn, *args)

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> AvatarSession:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        if exc_type is None and self._error is not None and not self._error_raised:
            raise self._error.with_traceback(self._error_tb)  # (see ``error``)

    async def start(self) -> AvatarSession:
        """Create the session and connect its media; on any failure everything is undone.

        ``close()`` from another task while this runs aborts it (``SessionClosedError``).
        """
        if self._state in _CLOSED:
            raise SessionClosedError(f"start(): the session is {self._state.value}")
        if self._state is not SessionState.NEW:
            raise SessionStateError(f"start() called in state {self._state.value!r}")
        loop = self._loop = asyncio.get_running_loop()
        self._t_start = time.monotonic()
        self._first_frame = loop.create_future()
        self._set_state(SessionState.CONNECTING)
        # Its own task, so that close() can abort a start without cancelling our caller.
        starting = self._starting = loop.create_task(self._start(), name="avatar-session-start")
        try:
            await starting  # a cancelled caller cancels `starting` too
        except BaseException as exc:  # cancellation too: nothing may stay open
            caller_cancelled = _cancelling()
            if not isinstance(exc, asyncio.CancelledError):
                self._errors.append(f"start: {exc}")
                self._emit("error", exc)
            await self._close_despite_cancel(failed=True)
            if isinstance(exc, asyncio.CancelledError) and not caller_cancelled:
                raise SessionClosedError("the session was closed while starting") from None
            raise
        finally:
            self._starting = None
        return self

    async def _start(self) -> None:
        self._watch_media()
        options = self._options
        renew: Callable[[], Awaitable[None]] | None = None
        if options.whep_url is not None:
            self._media_target = (options.whep_url, options.ice)
        else:
            client = self._client
            if client is None:
                client = ControlClient(options.api_url, options.ks)
                self._stack.push_async_callback(client.aclose)
            # connect_timeout bounds this phase as it does the media's: each request has its
            # own timeout (15 s) and the catalog its retries, 65 s in all on a dead network.
            stage = "the catalog (no avatar_id given)"
            try:
                async with asyncio.timeout(options.connect_timeout) as phase:
                    # (its retries stop in time to raise what the service answered)
                    avatar_id = options.avatar_id or await _default_avatar_id(
                        client, within=options.connect_timeout
                    )
                    voice_id = options.voice_id or os.environ.get(ENV_VOICE_ID) or None
                    self._voice_id = voice_id
                    t0 = time.monotonic()
                    self._stack.push_async_callback(self._close_live)
                    renew = functools.partial(self._open_live, client, avatar_id, voice_id)
                    stage = "creating the session (create, init-client)"
                    await renew()
                    self._session_seconds = time.monotonic() - t0
            except TimeoutError as timeout:
                if not phase.expired():
                    raise
                answer = _answered_meanwhile(timeout)
                if answer is not None:
                    raise answer from None
                raise RequestTimeoutError(
                    f"the Control API did not answer within connect_timeout "
                    f"({options.connect_timeout:g} s): {stage}"
                ) from None

        def new_connection() -> MediaConnection:
            assert self._media_target is not None
            whep_url, ice = self._media_target  # a renewal moves it to the new session
            return MediaConnection(
                whep_url,
                bearer=options.bearer,
                ice=ice,
                video_codecs=options.video_codecs,
                connect_timeout=options.connect_timeout,
                on_receiver=self._attach_receiver,
                on_remote_description=self.video_pipeline.use_remote_description,
                # The pipelines outlive each connection: a reconnect moves them on.
                release_receivers=True,
                cross_origin_auth=options.cross_origin_auth,
            )

        link = self._link = Reconnector(
            new_connection,
            policy=options.reconnect,
            last_activity=self._last_media_activity,
            on_reconnecting=self._on_reconnecting,
            on_reconnected=self._on_reconnected,
            on_failed=self._on_media_failed,
            request_keyframe=self.video_pipeline.request_keyframe,
            renew=renew,
        )
        self._stack.push_async_callback(link.close)
        await link.connect()
        self._set_state(SessionState.CONNECTED)
        self._emit("connected")

    async def _open_live(self, client: ControlClient, avatar_id: str, voice_id: str | None) -> None:
        """Create a service session and make it the current one; a previous one is ended
        (a renewal: see ``ReconnectPolicy.new_session_on_not_found``)."""
        stack = contextlib.AsyncExitStack()
        try:
            live = await stack.enter_async_context(
                client.open_session(
                    avatar_id,
                    voice_id,
                    keep_alive_interval=self._options.keep_alive_interval,
                    on_gone=self._on_session_gone,
                )
            )
        except BaseException:
            await stack.aclose()
            raise
        old = self._live
        self._live = live
        previous = self._swap_live_stack(stack)
        self._media_target = (
            live.client_config.whep_url,
            _with_turn(self._options.ice, live.client_config.turn),
        )
        if old is not None:
            logger.warning("service session %s replaced by %s", old.session_id, live.session_id)
        if previous is not None:
            await _close_quietly(previous, "ending the previous service session")

    def _swap_live_stack(
        self, stack: contextlib.AsyncExitStack | None
    ) -> contextlib.AsyncExitStack | None:
        old, self._live_stack = self._live_stack, stack
        return old

    async def _close_live(self) -> None:
        stack = self._swap_live_stack(None)
        if stack is not None:
            await stack.aclose()

    async def close(self) -> None:
        """Close streams and recorders, DELETE the WHEP resource, end the session. Idempotent.

        Completes even when the calling task is cancelled meanwhile (then re-raises). Called on
        another event loop than the session's, it runs on the session's (which must be
        running, in another thread): its HTTP client and connections belong to that loop.
        """
        own = self._loop
        if own is not None and own is not asyncio.get_running_loop() and not own.is_closed():
            if not own.is_running():
                raise SessionStateError("close(): the session's event loop is not running")
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.close(), own))
            return
        starting = self._starting
        if starting is not None and not starting.done():
            starting.cancel()  # start() then closes (failed) and raises SessionClosedError
            await asyncio.wait([starting])
        await self._close_despite_cancel(failed=False)

    async def _close_despite_cancel(self, *, failed: bool) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(failed))
        task = self._closing
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                await asyncio.wait([task])
            raise

    async def _close(self, failed: bool) -> None:
        never_started = self._state is SessionState.NEW
        if never_started:  # (silently: no event ever said it started)
            self._state = SessionState.CLOSING
        else:
            self._set_state(SessionState.CLOSING)
        # Streams and recorders can be opened before start(): they close either way.
        for stream in tuple(self._streams):
            stream.close()
        for cleanup in (*self._cleanups, self._unsub_keyframe, self._remove_first_sink):
            if cleanup is not None:
                cleanup()
        self._cleanups.clear()
        for recorder in tuple(self._recorders):
            try:
                await recorder.astop()
            except Exception as exc:
                logger.error("recorder %s: %s", recorder.path, exc)
                self._errors.append(f"recorder: {exc}")
        try:
            await self._stack.aclose()  # WHEP DELETE, then end, then our own HTTP client
        except Exception as exc:
            logger.warning("closing the session: %s", exc)
            self._errors.append(f"close: {exc}")
        self.video_pipeline.close()
        self.audio_pipeline.close()
        self._no_first_frame(SessionClosedError("the session closed before the first video frame"))
        if never_started:
            self._state = SessionState.ENDED
            return
        self._set_state(SessionState.FAILED if failed else SessionState.ENDED)
        self._emit("ended")

    # --- media wiring -------------------------------------------------------------------

    def _attach_receiver(self, receiver: RTCRtpReceiver, kind: Literal["video", "audio"]) -> None:
        # Called again for a WHEP 406 counter-offer's new peer connection: attach moves over.
        pipeline = self.video_pipeline if kind == "video" else self.audio_pipeline
        pipeline.attach(receiver)

    def _watch_media(self) -> None:
        """First keyframe (timing), first decoded frame, speech: installed before connecting."""
        self._unsub_keyframe = self.video_pipeline.subscribe(self._on_encoded_video)
        self._remove_first_sink = decoder_for(self._video_source).add_sink(self._on_first_decoded)
        if self._options.detect_speech:
            self._cleanups.append(decoder_for(self.audio_pipeline).add_sink(self._on_audio))

    def _on_encoded_video(self, frame: EncodedFrame) -> None:
        if frame.keyframe and self._t_keyframe is None:
            self._t_keyframe = frame.arrival_time
            if self._unsub_keyframe is not None:
                self._unsub_keyframe()
                self._unsub_keyframe = None

    def _on_first_decoded(self, decoded: DecodedFrame) -> None:
        # Decoder thread. Only the first frame matters; the sink is removed on the loop.
        if self._got_first_frame:
            return
        self._got_first_frame = True
        self._call_on_loop(self._first_frame_decoded, VideoFrame.from_decoded(decoded))

    def _first_frame_decoded(self, frame: VideoFrame) -> None:
        self._t_decoded = frame.decoded_time
        if self._remove_first_sink is not None:
            # The decoder keeps running only if a stream or recorder also uses it.
            self._remove_first_sink()
            self._remove_first_sink = None
        if self._first_frame is not None and not self._first_frame.done():
            self._first_frame.set_result(frame)
        timings = self.timings
        logger.info(
            "first video frame %dx%d after %.0f ms",
            frame.width,
            frame.height,
            (timings.total or 0.0) * 1000,
        )
        self._emit("first_frame", frame)

    def _on_audio(self, decoded: DecodedFrame) -> None:
        # Decoder thread: s16 packed stereo from the Opus decoder.
        av_frame = decoded.frame
        rate = int(av_frame.sample_rate) or 48000
        self._last_audio = time.monotonic()
        event = self.speech.feed(
            av_frame.to_ndarray(),
            decoded.encoded.presentation_time,
            int(av_frame.samples) / rate,
        )
        if event is not None:
            self._call_on_loop(self._on_speech_event, event)

    def _on_speech_event(self, event: SpeechEvent) -> None:
        now = time.monotonic()
        if event.kind == "started":
            self._last_speech_start = now
            self._emit("speaking_started", event)
        else:
            self._last_speech_end = now
            self._emit("speaking_ended", event)
        self._speech_changed.set()

    def _last_media_activity(self) -> float | None:
        """``time.monotonic()`` of the last RTP packet or sender report of either track."""
        video, audio = self.video_pipeline.last_activity, self.audio_pipeline.last_activity
        if video is None or audio is None:
            return audio if video is None else video
        return max(video, audio)

    def _on_reconnecting(self, outage: Outage) -> None:
        if self._state is SessionState.CONNECTED:
            self._set_state(SessionState.RECONNECTING)
        self._emit("reconnecting", outage)

    def _on_reconnected(self, outage: Outage) -> None:
        if self._state is SessionState.RECONNECTING:
            self._set_state(SessionState.CONNECTED)
        self._emit("reconnected", outage)

    def _on_media_failed(self, error: AvatarRTCError) -> None:
        self._lost_for_good(str(error), error)

    def _on_session_gone(self, error: ApiError) -> None:
        link = self._link
        if link is not None and link.policy.new_session_on_not_found and link.policy.enabled:
            # Reconnect now: its POST gets 404 and a new service session replaces this one.
            logger.warning("the service session is gone (HTTP %d): renewing it", error.status)
            link.watchdog.mark_dead("the service session is gone")
            return
        if link is not None:
            link.stop()  # nothing left to reconnect to
        self._lost_for_good(f"the service session is gone (HTTP {error.status})", error)

    def _lost_for_good(self, reason: str, error: AvatarRTCError) -> None:
        """``disconnected``, ``error``, and the streams end (their iterators stop instead of
        waiting for frames that will not come)."""
        logger.warning("avatar session %s: %s", self.session_id, reason)
        self._errors.append(reason)
        connected = self._state in (SessionState.CONNECTED, SessionState.RECONNECTING)
        if connected:  # (set before the events: their handlers may read it)
            self._error, self._error_tb = error, error.__traceback__
            self._set_state(SessionState.DISCONNECTED)
            self._emit("disconnected", reason)
        self._emit("error", error)
        if connected:  # (while starting, start() fails and cleans up itself)
            for stream in tuple(self._streams):  # (before the pipelines: they close them)
                stream.end(error, self._note_error_raised)
            self.video_pipeline.close()
            self.audio_pipeline.close()
            self._no_first_frame(error)

    def _no_first_frame(self, error: AvatarRTCError) -> None:
        """No first frame will come: ``wait_first_frame()`` raises ``error``."""
        if self._first_frame is not None and not self._first_frame.done():
            self._first_frame.set_exception(error)
            self._first_frame.exception()  # retrieved: no "never retrieved" warning

    # --- speech -------------------------------------------------------------------------

    def _require_live(self, what: str) -> LiveSession:
        if self._state in _CLOSED:
            raise SessionClosedError(f"{what}: the session is {self._state.value}")
        self._require_own_loop(what)
        if self._live is None:
            if self._options.whep_url is not None:
                raise ConfigurationError(f"{what} needs the Control API (bare WHEP session)")
            raise SessionStateError(f"{what}: the session is not started")
        return self._live

    async def say(self, text: str) -> str:
        """Make the avatar speak ``text``; returns the turn id (speech is asynchronous)."""
        live = self._require_live("say()")
        self._last_say = time.monotonic()
        try:
            return await live.say_text(text)
        except ServerError as exc:
            if exc.status != 503 or self._voice_id is not None:
                raise
            # Seen live (kaltura-avatar-api.md §1.3): say-text answers 503 on every call to a
            # session created without a voice.
            raise ServerError(
                f"{exc} (a session created without a voice: give a voice id, "
                f"SessionOptions(voice_id=...), --voice-id or ${ENV_VOICE_ID})",
                status=exc.status,
                error=exc.error,
                endpoint=exc.endpoint,
                retry_after=exc.retry_after,
            ) from exc

    async def say_audio(self, audio: str | Path | bytes, *, duration: float | None = None) -> str:
        """Make the avatar speak an audio file (or its bytes); returns the turn id.

        Any format PyAV reads; what is not MP3 is sent as MP3 (mono, 44.1 kHz), the one format
        the service was verified to accept. ``duration`` (seconds): measured when not given.
        """
        live = self._require_live("say_audio()")
        self._last_say = time.monotonic()
        return await live.say_audio(audio, duration=duration)

    async def interrupt(self) -> None:
        """Stop the current speech (the docs say the queue too; the live service was seen to
        leave turns queued behind the current one: do not rely on it to flush a queue)."""
        await self._require_live("interrupt()").interrupt()

    # timeout= (ASYNC109): part of the public contract, mirrored by the sync facade.
    async def wait_first_frame(self, timeout: float | None = 20.0) -> VideoFrame:  # noqa: ASYNC109
        """The first decoded video frame (``TimeoutError`` after ``timeout`` seconds).

        If none can come, raises :class:`SessionClosedError` (the session closed) or the
        error that lost the media for good (:class:`~avatar_rtc.MediaLostError`, ...).
        """
        if self._first_frame is None:
            raise SessionStateError("wait_first_frame(): the session is not started")
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._first_frame)

    def _idle(self, start_grace: float, quiet: float) -> bool:
        # The detector flips `speaking` on the decoder thread before its event reaches the
        # loop: until `_on_speech_event` ran, an utterance that just ended has no end stamp.
        heard_speaking = self._last_speech_start is not None and (
            self._last_speech_end is None or self._last_speech_end < self._last_speech_start
        )
        if (self.speech.speaking or heard_speaking) and not self._audio_stopped():
            return False
        now = time.monotonic()
        if self._last_say is not None and (
            self._last_speech_start is None or self._last_speech_start < self._last_say
        ):
            # Nothing heard since the last say(): the speech may still be synthesising.
            return now - self._last_say >= start_grace
        return self._last_speech_end is None or now - self._last_speech_end >= quiet

    async def wait_idle(
        self,
        timeout: float | None = 60.0,  # noqa: ASYNC109
        *,
        start_grace: float = 5.0,
        quiet: float = 0.5,
    ) -> None:
        """Wait until the avatar has nothing left to say (``TimeoutError`` after ``timeout``).

        Idle: not speaking, and, if ``say*()`` was called, speech was heard after it and has
        been quiet for ``quiet`` seconds (turns queued back to back play without such a
        pause). Speech that does not start within ``start_grace`` seconds counts as none.
        Judged from the received audio: needs ``detect_speech=True``. A loss is not idleness:
        once the media is lost for good this raises :attr:`error`, and while no media at all
        comes (a loss not yet declared) it waits.
        """
        if not self._options.detect_speech:
            raise ConfigurationError("wait_idle() needs SessionOptions(detect_speech=True)")
        if self._state is SessionState.NEW:
            raise SessionStateError("wait_idle(): the session is not started")
        async with asyncio.timeout(timeout):
            while True:
                if self._state in _CLOSED:
                    raise SessionClosedError(f"wait_idle(): the session is {self._state.value}")
                if self._error is not None:
                    self._error_raised = True
                    raise self._error
                if self._idle(start_grace, quiet) and not self._media_stalled():
                    return
                self._speech_changed.clear()
                # Also polled: idleness changes with time alone (start_grace, quiet).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._speech_changed.wait()

    # --- media --------------------------------------------------------------------------

    def video(
        self,
        format: VideoFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
    ) -> VideoStream:
        """A stream of decoded frames (``frame.array`` in ``format``; see :class:`VideoFormat`).

        ``policy`` ``latest`` (default: the newest picture, for models; 1 frame) or ``all``
        (lossless while you keep up; 300 frames); ``capacity`` overrides the frame count.
        Closed with the session, or by ``async with avatar.video() as stream``; opened after
        the media was lost for good, it ends at once. Call on the session's event loop.
        :class:`SessionClosedError` once the session is closed.
        """
        self._require_open("video()")
        stream = VideoStream(self._video_source, format, capacity=capacity, policy=policy)
        self._track(stream)
        return stream

    def audio(
        self,
        format: AudioFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
    ) -> AudioStream:
        """A stream of PCM frames in ``format`` (see :class:`AudioFormat`), policy ``all``."""
        self._require_open("audio()")
        stream = AudioStream(self.audio_pipeline, format, capacity=capacity, policy=policy)
        self._track(stream)
        return stream

    def _require_open(self, what: str) -> None:
        if self._state in _CLOSED:
            raise SessionClosedError(f"{what}: the session is {self._state.value}")
        self._require_own_loop(what)

    def _require_own_loop(self, what: str) -> None:
        """A started session's streams, recorder and HTTP calls belong to its event loop:
        from another thread or loop they failed with a bare RuntimeError (or worse)."""
        own = self._loop
        if own is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not own:
            raise SessionStateError(
                f"{what}: call it on the session's event loop (from another thread: "
                "SyncAvatarSession, or asyncio.run_coroutine_threadsafe)"
            )

    def _track(self, stream: VideoStream | AudioStream) -> None:
        # Forget closed streams (a long session may open many), keeping their drop counts.
        for old in [s for s in self._streams if s.closed]:
            stats = old.stats()
            self._closed_stream_drops += stats.dropped + stats.callbacks_dropped
            self._streams.remove(old)
        self._streams.append(stream)
        if self._error is not None:  # opened after the media ended for good
            stream.end(self._error, self._note_error_raised)

    def _note_error_raised(self) -> None:
        self._error_raised = True

    def record(
        self, path: str | os.PathLike[str], options: RecordOptions | None = None
    ) -> Recorder:
        """Record to ``path`` (.mp4/.mkv/.webm) with ``options`` (mode, queue, encoding).

        Started and fed at once; stopped (file finalised) by ``close()`` or ``stop()``. Copy
        mode keeps the codec that arrived when the container holds it (mp4: H264; mkv: H264 or
        VP8; webm: VP8) and re-encodes the video otherwise; ``stats().video_route`` says which.
        :class:`SessionClosedError` once the session is closed or lost its media for good.
        """
        self._require_open("record()")
        if self.video_pipeline.closed:  # nothing would ever be written
            raise SessionClosedError("record(): the media connection was lost for good")
        recorder = Recorder(path, options)
        recorder.start()
        self._recorders.append(recorder)
        if recorder.mode == "copy":
            recorder.attach(self.video_pipeline)
            recorder.attach(self.audio_pipeline)
            # The file starts at a keyframe: ask for one now rather than wait for the next,
            # unless no frame came yet (the first one released is a keyframe, and the
            # pipeline asks for one itself when the stream does not start with one).
            if self.video_pipeline.frames_released > 0:
                self.video_pipeline.request_keyframe()
            return recorder

        # Its sinks go with stop(): the decoders stop when nothing else uses them.
        recorder.attach_decoded(decoder_for(self._video_source))
        recorder.attach_decoded(decoder_for(self.audio_pipeline))
        return recorder

    # --- stats --------------------------------------------------------------------------

    def stats(self) -> SessionStats:
        """A snapshot of everything the session counts (:class:`SessionStats`)."""
        live = self._live
        keep_alive = None
        if live is not None:
            ka = live.keep_alive
            keep_alive = KeepAliveStats(
                ka.state, ka.sent, str(ka.last_error) if ka.last_error else None
            )
        video_decoder = decoder_for(self._video_source)  # (after the playout stage, if any)
        audio_decoder = decoder_for(self.audio_pipeline)
        return SessionStats(
            state=self._state,
            session_id=self.session_id,
            connection_state=self.connection.state if self.connection else "new",
            selected_pair=self.selected_pair,
            timings=self.timings,
            video=self.video_pipeline.stats(),
            audio=self.audio_pipeline.stats(),
            video_decoder=video_decoder.stats(),
            audio_decoder=audio_decoder.stats(),
            streams=tuple(s.stats() for s in self._streams),
            closed_stream_drops=self._closed_stream_drops,
            recorders=tuple(r.stats() for r in self._recorders),
            keep_alive=keep_alive,
            speaking=self.speaking,
            utterances=self.speech.utterances,
            audio_level_db=self.speech.level_db,
            errors=tuple(self._errors),
            reconnect=self._link.stats() if self._link is not None else ReconnectStats(),
            playout_delay_s=None if self._playout is None else self._playout.playout.delay,
        )


def _cancelling() -> bool:
    """Is the current task being cancelled (as opposed to something it awaited)?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _close_quietly(stack: contextlib.AsyncExitStack, what: str) -> None:
    try:
        await stack.aclose()
    except Exception as exc:  # the old session is gone already: its end may fail
        logger.info("%s: %s", what, exc)


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def _with_turn(ice: IceOptions, turn: TurnConfig | None) -> IceOptions:
    """The caller's ICE options plus the service's TURN server (the caller's own wins)."""
    if turn is None or ice.turn is not None:
        return ice
    if turn.host.endswith(".invalid"):
        # RFC 2606: never resolves (the emulator's placeholder); don't spend lookups on it.
        logger.debug("ignoring TURN host %s", turn.host)
        return ice
    return dataclasses.replace(ice, turn=turn)


def _answered_meanwhile(timeout: TimeoutError) -> AvatarRTCError | None:
    """What a create given up on by the timeout answered while it was still waited for
    (``session_scope`` makes it the cause of the cancellation): a refused KS says more than
    "no answer"."""
    cancelled = timeout.__cause__
    answer = None if cancelled is None else cancelled.__cause__
    return answer if isinstance(answer, AvatarRTCError) else None


async def _default_avatar_id(client: ControlClient, within: float | None = None) -> str:
    from_env = os.environ.get(ENV_AVATAR_ID)
    if from_env:
        return from_env
    try:
        visuals = await client.list_catalog("Visual", deadline=within)
    except AvatarRTCError as exc:
        # Keep the cause's type (a refused KS stays an AuthenticationError, an unreachable
        # API a NetworkError): only add why the catalog was asked.
        exc.add_note(f"(no avatar_id given and ${ENV_AVATAR_ID} unset: the catalog was asked)")
        raise
    if not visuals:
        raise ConfigurationError(f"no avatar_id given, ${ENV_AVATAR_ID} unset, catalog empty")
    logger.info("no avatar_id given: using the catalog's first visual %s", visuals[0].item_id)
    return visuals[0].item_id
