"""Video QA fed frame by frame: frame rates, freezes, pauses and black runs.

- **fps**: decoded frames per second; **harmonic fps**: ``sum(d) / sum(d^2)`` over the
  intervals ``d`` between *new* frames (long intervals weigh more, as a viewer perceives them).
- **Freeze** (W3C webrtc-stats): an interval between new frames ``>= max(3 x mean, mean +
  150 ms)``, ``mean`` over the last 30 intervals, once 5 new frames were seen. A frame that is
  (nearly) identical to the last new one is not new, so frames that never came (``missing``) and
  frames that came but repeat the picture (``repeated``) are both caught. Before the 6th new
  frame, repeated frames are judged later: against the median of those first intervals once
  it comes, else (the picture never changed that often: frozen from its first frame) against
  the median interval of the frames that came, once 5 came. The freeze starts
  when the next frame was due (last new frame + mean interval) and lasts until the picture
  changes again. A picture that stays black is a black run, not a freeze.
- **Pause**: more than 5 s without any decoded frame (not also counted as a freeze).
- **The end**: frames that stop at least ``TRAILING_MIN`` before the end of what was observed
  (the audio's end, given to :meth:`VideoAnalyser.result`) are a freeze from when the next
  frame was due, or a pause past 5 s, up to that end: the picture stopped while the sound went
  on. (Less is the last frames still on their way when the observation stopped.)
- **Black** (ffmpeg ``blackdetect``): a frame is black when at least 98 % of its pixels are at
  most 10 % of full scale; runs of at least 0.1 s, from the first black frame to the first
  frame that is not.

"Nearly identical": in every block of a 16 x 16 grid, the frame differs from the last new frame
by less than ``change_threshold`` grey levels on average (mean absolute difference). A block
average keeps the codec's noise small but not a moving mouth or a blink; comparing with the last
*new* frame (not the previous one) lets a slow drift add up until it counts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from .spans import Span

__all__ = ["Freeze", "GrayImage", "VideoAnalyser", "VideoResult", "frame_change"]

logger = logging.getLogger(__name__)

GrayImage = npt.NDArray[np.uint8]
FreezeKind = Literal["missing", "repeated"]

GRID = 16  # blocks per side
CHANGE_THRESHOLD = 2.0  # grey levels (of 255) a block must change by for a frame to be new
FREEZE_WINDOW = 30  # intervals in the running mean
FREEZE_MIN_FRAMES = 5
FREEZE_FACTOR = 3.0
FREEZE_MARGIN = 0.150  # seconds
PAUSE_AFTER = 5.0  # seconds
TRAILING_MIN = 1.0  # seconds between the last frame and the end that count
PIXEL_BLACK = 0.10  # of full scale
PICTURE_BLACK = 0.98  # fraction of pixels
MIN_BLACK = 0.1  # seconds


@dataclass(frozen=True, slots=True)
class Freeze(Span):
    kind: FreezeKind = "missing"

    def shifted(self, origin: float) -> Freeze:
        return Freeze(self.start - origin, self.duration, self.kind)

    def to_dict(self) -> dict[str, float | str]:  # type: ignore[override]
        return {**Span.to_dict(self), "kind": self.kind}


@dataclass
class VideoResult:
    """What :meth:`VideoAnalyser.result` found; times on the feeder's clock."""

    frames: int = 0
    new_frames: int = 0
    first_time: float | None = None
    last_time: float | None = None
    width: int = 0
    height: int = 0
    freezes: list[Freeze] = field(default_factory=list)
    pauses: list[Span] = field(default_factory=list)
    black: list[Span] = field(default_factory=list)
    new_frame_times: list[float] = field(default_factory=list)
    sum_new_intervals: float = 0.0
    sum_new_intervals_sq: float = 0.0

    @property
    def fps(self) -> float | None:
        if self.first_time is None or self.last_time is None or self.frames < 2:
            return None
        span = self.last_time - self.first_time
        return (self.frames - 1) / span if span > 0 else None

    @property
    def harmonic_fps(self) -> float | None:
        if self.sum_new_intervals_sq <= 0:
            return None
        return self.sum_new_intervals / self.sum_new_intervals_sq


def _freeze(last_new: float, interval: float, kind: FreezeKind, mean: float) -> Freeze | None:
    """The rule: ``interval`` after the new frame at ``last_new`` is a freeze when it is at
    least ``max(3 x mean, mean + 150 ms)``; it starts when the next frame was due."""
    if interval < max(FREEZE_FACTOR * mean, mean + FREEZE_MARGIN):
        return None
    return Freeze(last_new + mean, interval - mean, kind)


def frame_change(gray: GrayImage, reference: GrayImage) -> float:
    """The largest mean absolute difference, in grey levels, of a ``GRID x GRID`` block."""
    h, w = gray.shape
    bh, bw = max(h // GRID, 1), max(w // GRID, 1)
    rows, cols = min(GRID, h), min(GRID, w)
    diff = np.abs(
        gray[: rows * bh, : cols * bw].astype(np.int16) - reference[: rows * bh, : cols * bw]
    )
    return float(diff.reshape(rows, bh, cols, bw).mean(axis=(1, 3)).max())


class VideoAnalyser:
    """Feed every decoded frame (grey, any size; the same size throughout is best)."""

    def __init__(
        self,
        *,
        change_threshold: float = CHANGE_THRESHOLD,
        pause_after: float = PAUSE_AFTER,
        pixel_black: float = PIXEL_BLACK,
        picture_black: float = PICTURE_BLACK,
        min_black: float = MIN_BLACK,
    ) -> None:
        self.change_threshold = change_threshold
        self.pause_after = pause_after
        self._black_level = pixel_black * 255.0
        self.picture_black = picture_black
        self.min_black = min_black
        self._result = VideoResult()
        self._reference: GrayImage | None = None  # the last new frame
        self._reference_black = False
        self._last_new: float | None = None
        self._intervals: deque[float] = deque(maxlen=FREEZE_WINDOW)
        # Until the rule has its history: the intervals between the frames that came, and the
        # intervals between new frames not judged yet (see _check_freeze).
        self._frame_intervals: deque[float] = deque(maxlen=FREEZE_WINDOW)
        self._pending: list[tuple[float, float, FreezeKind]] = []
        self._early: list[float] = []  # of those first intervals, the ones not black or paused
        self._repeats = 0  # frames since the last new one that repeated it
        self._paused = False  # a pause happened since the last new frame
        self._black_since: float | None = None

    def feed(self, gray: GrayImage, t: float, size: tuple[int, int] | None = None) -> None:
        """One decoded frame shown at ``t`` seconds; ``size``: its (width, height) before it was
        shrunk to ``gray``, for the report."""
        r = self._result
        if r.last_time is not None:
            gap = t - r.last_time
            if not self._judging:
                self._frame_intervals.append(gap)
            if gap > self.pause_after:
                r.pauses.append(Span(r.last_time, gap))
                self._paused = True
        else:
            r.first_time = t
            r.width, r.height = size or (gray.shape[1], gray.shape[0])
        r.frames += 1
        r.last_time = t
        black = self._track_black(gray, t)
        ref = self._reference
        if (
            ref is not None
            and ref.shape == gray.shape
            and frame_change(gray, ref) < self.change_threshold
        ):
            self._repeats += 1
            return
        self._reference = gray
        self._new_frame(t)
        self._reference_black = black

    def _new_frame(self, t: float) -> None:
        r = self._result
        r.new_frames += 1
        r.new_frame_times.append(t)
        if self._last_new is not None:
            interval = t - self._last_new
            self._check_freeze(self._last_new, interval)
            r.sum_new_intervals += interval
            r.sum_new_intervals_sq += interval * interval
            self._intervals.append(interval)
        self._last_new = t
        self._repeats = 0
        self._paused = False

    def _unjudged(self, tail: tuple[float, FreezeKind] | None) -> list[Freeze]:
        """The freezes of the intervals not judged yet and of ``tail`` (until, kind): from the
        last new frame to ``until``, the picture still stopped. Not kept: it may change yet."""
        if self._judging:
            mean: float | None = self._mean_interval()
        elif self._early:  # the picture changed a few times: at the rate it did
            mean = float(np.median(self._early))
        else:  # it never changed: at the rate frames came
            mean = self._frame_interval()
        if mean is None:
            return []
        todo = list(self._pending)
        last_new = self._last_new
        if tail is not None and last_new is not None:
            until, kind = tail
            # As in _check_freeze: not black, not after a pause, and frames that never came
            # only once the rule has its history (W3C).
            counted = self._judging or kind == "repeated"
            if counted and not (self._reference_black or self._paused):
                todo.append((last_new, until - last_new, kind))
        return [freeze for args in todo if (freeze := _freeze(*args, mean)) is not None]

    @property
    def _judging(self) -> bool:
        """The rule has its history: more than ``FREEZE_MIN_FRAMES`` new frames."""
        return self._result.new_frames > FREEZE_MIN_FRAMES and bool(self._intervals)

    def _check_freeze(self, last_new: float, interval: float) -> None:
        if self._judging and self._pending:
            # The first intervals, judged against their median (of those not black or paused):
            # a picture frozen from its first frame and then moving has one long interval among
            # them, a picture that changes slowly only long ones (against the frame rate, each
            # was a freeze).
            median = float(np.median(self._early or self._intervals))
            for args in self._pending:
                self._keep(_freeze(*args, median))
            self._pending.clear()
        # A black picture that stays black is a black run; a pause is not also a freeze.
        if self._reference_black or self._paused:
            return
        kind: FreezeKind = "repeated" if self._repeats else "missing"
        if self._judging:
            self._keep(_freeze(last_new, interval, kind, self._mean_interval()))
            return
        self._early.append(interval)
        if kind == "repeated":  # no rate to compare with yet (frames that never came: W3C)
            self._pending.append((last_new, interval, kind))

    def _keep(self, freeze: Freeze | None) -> None:
        if freeze is not None:
            logger.debug(
                "freeze (%s) at %.3f s for %.3f s", freeze.kind, freeze.start, freeze.duration
            )
            self._result.freezes.append(freeze)

    def _mean_interval(self) -> float:
        return sum(self._intervals) / len(self._intervals)

    def _frame_interval(self) -> float | None:
        """The median interval between the frames that came, once more than
        ``FREEZE_MIN_FRAMES`` came: the rate of a picture that did not change enough to have
        one of its own (frozen from its first frame, to the end); None before that."""
        if len(self._frame_intervals) < FREEZE_MIN_FRAMES:
            return None
        return float(np.median(self._frame_intervals))

    def _track_black(self, gray: GrayImage, t: float) -> bool:
        black = bool(np.count_nonzero(gray <= self._black_level) >= self.picture_black * gray.size)
        if black:
            if self._black_since is None:
                self._black_since = t
        elif self._black_since is not None:
            self._close_black(t)
        return black

    def _close_black(self, end: float) -> None:
        assert self._black_since is not None
        if end - self._black_since >= self.min_black:
            self._result.black.append(Span(self._black_since, end - self._black_since))
        self._black_since = None

    def result(self, end: float | None = None) -> VideoResult:
        """The figures so far. A black run or a frozen picture still going at the last frame
        counts up to it (plus one mean interval for black: the last frame's own duration);
        with ``end`` (where the observation ends: the audio's end) and the last frame at least
        ``TRAILING_MIN`` before it, the picture that stopped counts up to ``end``."""
        r = self._result
        mean = sum(self._intervals) / len(self._intervals) if self._intervals else 0.0
        black = list(r.black)
        if self._black_since is not None and r.last_time is not None:
            black_end = r.last_time + mean
            if black_end - self._black_since >= self.min_black:
                black.append(Span(self._black_since, black_end - self._black_since))
        freezes, pauses = list(r.freezes), list(r.pauses)
        last = r.last_time
        tail: tuple[float, FreezeKind] | None = None  # the picture still stopped: until, kind
        if last is not None and end is not None and end - last >= TRAILING_MIN:
            # The picture stopped while the sound went on: frames that never came (after the
            # repeated ones, if the picture was frozen already: then one freeze, "repeated").
            if end - last > self.pause_after:
                if self._repeats:
                    tail = (last, "repeated")
                pauses.append(Span(last, end - last))
            else:
                tail = (end, "repeated" if self._repeats else "missing")
        elif last is not None and self._repeats:
            tail = (last, "repeated")
        freezes += self._unjudged(tail)
        return dataclasses.replace(
            r,
            freezes=freezes,
            pauses=pauses,
            black=black,
            new_frame_times=list(r.new_frame_times),
        )
