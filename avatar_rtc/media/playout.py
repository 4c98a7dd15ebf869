"""Adaptive playout delay in front of the video decoder, as a browser plays video out.

Frames leave the jitter buffer the moment they are complete. A frame that waited for a
retransmission, or a keyframe squeezed through a slow link, arrives a round trip (or a few
hundred ms) late, and a consumer that shows or measures frames as they come sees a freeze (the
W3C rule: a frame interval over max(3 x mean, mean + 150 ms)). Browsers hold every frame until
its RTP time plus a delay that covers the recent lateness; :class:`PlayoutSource` does the same
when ``SessionOptions(max_playout_delay=...)`` asks for it (default off: models usually want
the lowest latency):

- transit = arrival - RTP time (seconds); the earliest transit of the last ``window`` seconds
  is the base (a frame that came as fast as the network allows is on time);
- lateness = transit - base; the delay is the ``quantile`` of the lateness over the window, at
  most ``max_delay``;
- a frame is handed on at RTP time + base + delay, at once if that has passed, and never
  before the frame ahead of it;
- a frame later than ``max_delay`` cannot be covered: it is handed on at once and counts as
  ``max_delay`` late; the backlog that comes with it (frames arriving at less than half
  their RTP spacing, e.g. the NACKed tail of an outage, and then any frame still later than
  the delay in force, e.g. the tail's last frames, asked for a round trip after the rest) is
  handed on at once and left out of the history, until a frame comes on time. Recorded, an
  outage's seconds of backlog would hold every later frame ``max_delay`` back, held in RTP
  time order they kept the stream a whole outage behind, and a tail's last frames counted as
  lateness raised the delay for the window's length (35 ms for 5 s after a 2 s outage);
- a jump of the RTP clock (a new sender after a reconnect) starts the history over: at once
  when it makes frames early by ``RESET``, after ``NEW_CLOCK_RUN`` frames in a row (not a
  backlog) each later than ``max_delay`` when it makes them late.

Recordings do not go through it: their timestamps come from RTP already.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from ..rtc.encoded_frame import EncodedFrame, FrameSource, MediaKind

__all__ = ["PlayoutDelay", "PlayoutSource"]

logger = logging.getLogger(__name__)

RESET = 1.0  # seconds of earliness that mean a new RTP clock, not the network
NEW_CLOCK_RUN = 5  # frames in a row, at their pace, each too late to cover: a new RTP clock


class PlayoutDelay:
    """When to hand each frame on; see the module docstring."""

    def __init__(self, *, max_delay: float, window: float = 5.0, quantile: float = 0.95) -> None:
        if max_delay < 0 or window <= 0 or not 0 < quantile <= 1:
            raise ValueError("max_delay >= 0, window > 0 and 0 < quantile <= 1")
        self.max_delay = max_delay
        self._window = window
        self._quantile = quantile
        self._history: collections.deque[tuple[float, float]] = collections.deque()  # (t, transit)
        self._previous: tuple[float, float] | None = None  # (RTP time, arrival) of the last frame
        self._backlog = False  # the frames arriving now came with one too late to cover
        self._late_run = 0  # frames in a row too late to cover, at their pace
        self.delay = 0.0  # the delay in force (seconds)

    def due(self, rtp_seconds: float, arrival: float) -> float:
        """The time (``arrival``'s clock) a frame of RTP time ``rtp_seconds`` is due."""
        transit = arrival - rtp_seconds
        previous, self._previous = self._previous, (rtp_seconds, arrival)
        # Came with the frame before it (a backlog released at once), not at its own pace.
        hurried = previous is not None and arrival - previous[1] < (rtp_seconds - previous[0]) / 2
        history = self._history
        while history and history[0][0] < arrival - self._window:
            history.popleft()
        if history:
            base = min(t for _, t in history)
            if base - transit > RESET:
                history.clear()
            elif transit - base > self.max_delay and not (hurried and self._backlog):
                self._backlog = True
                self._late_run += 1
                if self._late_run < NEW_CLOCK_RUN:
                    history.append((arrival, base + self.max_delay))
                    self._update_delay()
                    return arrival
                history.clear()
            elif self._backlog and (hurried or transit - base > self.delay):
                return arrival  # still the backlog's: until a frame is on time
        self._backlog = False
        self._late_run = 0
        history.append((arrival, transit))
        return rtp_seconds + self._update_delay()

    def _update_delay(self) -> float:
        """Set ``delay`` from the history; returns base + delay."""
        transits = sorted(t for _, t in self._history)
        base = transits[0]
        rank = min(len(transits) - 1, int(self._quantile * len(transits)))
        self.delay = min(self.max_delay, transits[rank] - base)
        return base + self.delay


class PlayoutSource:
    """A :class:`FrameSource` that hands ``source``'s frames on when :class:`PlayoutDelay`
    says they are due (on the event loop, in order)."""

    def __init__(self, source: FrameSource, *, max_delay: float, window: float = 5.0) -> None:
        self._source = source
        self.playout = PlayoutDelay(max_delay=max_delay, window=window)
        self._callbacks: list[Callable[[EncodedFrame], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._held: collections.deque[tuple[float, EncodedFrame]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_due = float("-inf")

    @property
    def kind(self) -> MediaKind:
        return self._source.kind

    @property
    def frames_released(self) -> int:
        return int(getattr(self._source, "frames_released", 1))

    @property
    def closed(self) -> bool:
        return bool(getattr(self._source, "closed", False))

    def request_keyframe(self) -> None:
        self._source.request_keyframe()

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        on_close: Any = getattr(self._source, "on_close", None)
        if not callable(on_close):
            return lambda: None
        remove: Callable[[], None] = on_close(callback)
        return remove

    def subscribe(self, callback: Callable[[EncodedFrame], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        if self._unsubscribe is None:
            self._unsubscribe = self._source.subscribe(self._on_frame)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            if not self._callbacks and self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
                self._held.clear()
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None

        return remove

    def _on_frame(self, frame: EncodedFrame) -> None:
        due = self.playout.due(frame.rtp_timestamp / frame.clock_rate, frame.arrival_time)
        due = self._last_due = max(due, self._last_due)
        if not self._held and due <= time.monotonic():
            self._deliver(frame)
            return
        self._held.append((due, frame))
        if self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        delay = max(0.0, self._held[0][0] - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            self._deliver(self._held.popleft()[1])
        if self._held:
            self._schedule()

    def _deliver(self, frame: EncodedFrame) -> None:
        for callback in list(self._callbacks):
            try:
                callback(frame)
            except Exception:
                logger.exception("playout: a frame subscriber failed")
