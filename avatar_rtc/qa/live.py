"""LiveQa: the QA analysers attached to a running :class:`~avatar_rtc.session.AvatarSession`.

::

    async with AvatarSession(options) as avatar, LiveQa(avatar) as qa:
        await avatar.wait_first_frame()
        await qa.say("Hello!")  # a turn, timed from this call
        await avatar.wait_idle()
        report = await qa.report()

Every decoded video frame and all the audio go through the same analysers as a file
(:class:`~.analysis.MediaQa`), at their presentation times on the session's A/V clock, in one
worker thread (the event loop only hands the frames over). The network counters are sampled
every ``sample_every`` seconds, and ``say``/``say_audio`` through this object are the turns.
Times in the report are seconds from the first frame, as for a file; the say calls are put on
the same clock through ``session.clock.origin`` (the ``time.monotonic()`` of presentation 0).

If the analysis falls ``MAX_BACKLOG`` video frames behind (a machine too slow for it), newer
frames are not analysed and counted (``video.not_analysed_frames``): those gaps look like
freezes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import av
import numpy as np

from ..media.formats import AudioFormat, VideoFormat
from ..tasks import cancel_and_wait
from .analysis import MediaQa
from .network import JitterMeter, NetworkResult, NetworkSample, TrackSample
from .report import LiveResult, QaReport
from .thresholds import Thresholds
from .turns import Say

if TYPE_CHECKING:
    from ..media.frames import AudioFrame, VideoFrame
    from ..media.streams import AudioStream, Policy, VideoStream
    from ..rtc.candidate_pair import SelectedPair
    from ..rtc.clock import AvClock
    from ..rtc.encoded_frame import EncodedFrame
    from ..rtc.receiver import ReceiveStats

__all__ = ["LiveQa", "QaSession"]

logger = logging.getLogger(__name__)

SAMPLE_EVERY = 1.0  # seconds between two network samples
MAX_BACKLOG = 250  # video frames waiting for the analysis (10 s at 25 fps)
BEHIND_FRAMES = 1500  # audio frames (30 s of 20 ms) the presentation-arrival median is of
# What the analysers take: float, both channels (the loudness of stereo sums the two, as for
# a file), the Opus rate.
ANALYSIS_AUDIO = AudioFormat(sample_rate=48000, channels=2, frame_ms=20, dtype="float32")


class _Stats(Protocol):
    @property
    def video(self) -> ReceiveStats: ...
    @property
    def audio(self) -> ReceiveStats: ...
    @property
    def selected_pair(self) -> SelectedPair | None: ...


class _Timings(Protocol):
    def as_dict(self) -> dict[str, float | None]: ...


class _Frames(Protocol):
    def subscribe(self, callback: Callable[[EncodedFrame], None]) -> Callable[[], None]: ...


class QaSession(Protocol):
    """What :class:`LiveQa` uses of an :class:`~avatar_rtc.session.AvatarSession` (a layer
    above this package: it is named here by what it does, not imported)."""

    @property
    def session_id(self) -> str | None: ...
    @property
    def clock(self) -> AvClock: ...
    @property
    def timings(self) -> _Timings: ...
    @property
    def video_pipeline(self) -> _Frames: ...
    @property
    def audio_pipeline(self) -> _Frames: ...
    def stats(self) -> _Stats: ...
    def video(
        self,
        format: VideoFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
    ) -> VideoStream: ...
    def audio(
        self,
        format: AudioFormat | None = None,
        *,
        capacity: int | None = None,
        policy: Policy | None = None,
    ) -> AudioStream: ...
    async def say(self, text: str) -> str: ...
    async def say_audio(
        self, audio: str | Path | bytes, *, duration: float | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class _SayCall:
    turn_id: str
    text: str
    issued: float  # time.monotonic()
    answered: float


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float  # time.monotonic()
    stats: _Stats
    video_jitter: float
    audio_jitter: float


class LiveQa:
    """Media QA of a live session; see the module docstring. Start it (or ``async with``)
    before or after the session started, on the session's event loop."""

    def __init__(
        self,
        session: QaSession,
        thresholds: Thresholds | None = None,
        *,
        sample_every: float = SAMPLE_EVERY,
    ) -> None:
        self.session = session
        self.qa = MediaQa(thresholds)
        self.sample_every = sample_every
        self.not_analysed = 0  # video frames: the analysis was MAX_BACKLOG frames behind
        self._says: list[_SayCall] = []
        self._samples: list[_Sample] = []
        self._jitter = {"video": JitterMeter(), "audio": JitterMeter()}
        self._worker: ThreadPoolExecutor | None = None
        self._backlog = 0
        self._lock = threading.Lock()
        self._streams: list[VideoStream | AudioStream] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._sampler: asyncio.Task[None] | None = None
        self._failures = 0
        # Audio frames' presentation time minus their arrival (origin-relative): the A/V
        # clock anchors audio on its first frame's transit and never earlier, so presentation
        # runs behind arrival by that frame's excess (21-69 ms measured on loopback).
        self._behind_arrival: collections.deque[float] = collections.deque(maxlen=BEHIND_FRAMES)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> LiveQa:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Attach to the session's media and start sampling its counters."""
        if self._worker is not None:
            raise RuntimeError("LiveQa already started")
        session = self.session
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar-qa")
        # pixel_format=None: the worker shrinks each frame itself, as for a file.
        video = session.video(VideoFormat(pixel_format=None), policy="all")
        video.on_frame(self._on_video)
        audio = session.audio(ANALYSIS_AUDIO)
        audio.on_frame(self._on_audio)
        self._streams = [video, audio]
        self._unsubscribe = [
            session.video_pipeline.subscribe(self._jitter["video"].feed),
            session.audio_pipeline.subscribe(self._jitter["audio"].feed),
        ]
        self._sampler = asyncio.get_running_loop().create_task(
            self._sample_forever(), name="avatar-qa-network"
        )

    async def stop(self) -> None:
        """Detach (a last network sample first) and let the analysis catch up. Idempotent."""
        if self._sampler is not None:
            await cancel_and_wait(self._sampler)
            self._sampler = None
            self._sample(final=True)
        for stream in self._streams:
            stream.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._streams, self._unsubscribe = [], []
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.get_running_loop().run_in_executor(worker, _nothing)
            worker.shutdown()

    # --- turns ----------------------------------------------------------------------------

    async def say(self, text: str) -> str:
        """``session.say(text)``, timed as a turn; returns the turn id."""
        return await self._timed(text, self.session.say(text))

    async def say_audio(self, audio: str | Path | bytes, *, duration: float | None = None) -> str:
        """``session.say_audio(...)``, timed as a turn (its text: the file name)."""
        label = "<audio>" if isinstance(audio, bytes) else Path(audio).name
        return await self._timed(label, self.session.say_audio(audio, duration=duration))

    async def _timed(self, text: str, call: Awaitable[str]) -> str:
        issued = time.monotonic()
        turn_id: str = await call
        self._says.append(_SayCall(turn_id, text, issued, time.monotonic()))
        return turn_id

    # --- the report -----------------------------------------------------------------------

    async def report(self) -> QaReport:
        """The report so far (after :meth:`stop`: of the whole session)."""
        media, live = self._live_result()
        if self._worker is not None:  # after the frames already handed over
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._worker, self.qa.report, media, live)
        return await asyncio.to_thread(self.qa.report, media, live)

    def _live_result(self) -> tuple[dict[str, Any], LiveResult]:
        session = self.session
        samples = self._samples
        origin = session.clock.origin
        if origin is None:  # no media: any zero will do
            origin = samples[0].at if samples else time.monotonic()
        stats = samples[-1].stats if samples else session.stats()
        # The last pair known (closing the connection forgets it).
        pairs = [s.stats.selected_pair for s in samples if s.stats.selected_pair is not None]
        network = NetworkResult(
            samples=[
                NetworkSample(
                    s.at - origin,
                    TrackSample(s.stats.video, s.video_jitter),
                    TrackSample(s.stats.audio, s.audio_jitter),
                )
                for s in samples
            ],
            selected_pair=pairs[-1] if pairs else None,
        )
        # Say calls on the presentation time line the speech is measured on (see _on_audio):
        # else say -> speech reads the clock's anchoring as latency.
        behind = float(np.median(self._behind_arrival)) if self._behind_arrival else 0.0
        says = [
            Say(c.turn_id, c.text, c.issued - origin + behind, c.answered - origin + behind)
            for c in self._says
        ]
        media = {  # the keys of a file's (no container: nothing was written)
            "source": "live",
            "container": None,
            "video_codec": (stats.video.codec or "").lower() or None,
            "audio_codec": (stats.audio.codec or "").lower() or None,
        }
        live = LiveResult(
            session.session_id, session.timings.as_dict(), says, network, self.not_analysed
        )
        return media, live

    # --- feeding the analysers ---------------------------------------------------------------

    def _on_video(self, frame: VideoFrame) -> None:
        with self._lock:
            full = self._backlog >= MAX_BACKLOG
            if not full:
                self._backlog += 1
        if full:
            self.not_analysed += 1
            return
        self._submit(self._feed_video, frame.av_frame, frame.presentation_time)

    def _on_audio(self, frame: AudioFrame) -> None:
        origin = self.session.clock.origin
        if origin is not None:
            self._behind_arrival.append(frame.presentation_time - (frame.arrival_time - origin))
        samples = np.ascontiguousarray(frame.data.T)  # (channels, n), as the analysers take
        self._submit(self.qa.feed_audio, samples, frame.presentation_time, frame.sample_rate)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._worker is not None:
            self._worker.submit(self._guarded, fn, *args)

    def _feed_video(self, frame: av.VideoFrame, t: float) -> None:
        with self._lock:
            self._backlog -= 1
        self.qa.feed_frame(frame, t)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        # Worker thread: an analyser's failure must not go unseen (a future nobody reads).
        try:
            fn(*args)
        except Exception:
            self._failures += 1
            if self._failures == 1:
                logger.exception("QA analysis failed (logged once)")

    # --- network --------------------------------------------------------------------------

    async def _sample_forever(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.sample_every)

    def _sample(self, *, final: bool = False) -> None:
        sample = _Sample(
            time.monotonic(),
            self.session.stats(),
            self._jitter["video"].jitter,
            self._jitter["audio"].jitter,
        )
        samples = self._samples
        if final and len(samples) > 1 and sample.at - samples[-1].at < self.sample_every / 2:
            # A stop right after a periodic sample: the timeline's last point would span a few
            # ms (no packet in it on a busy machine); the one before stretches to the stop.
            samples[-1] = sample
        else:
            samples.append(sample)


def _nothing() -> None:
    """Queued behind the frames: done once the analysis has caught up."""
