"""Where the file starts and how presentation times become file timestamps.

Timestamps come only from ``presentation_time`` (the session's shared A/V clock), never from
frame counts: a gap in the input stays a gap in the file, so audio never drifts against video.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction
from typing import Generic, TypeVar

from .stats import StatsBook

__all__ = ["StartGate", "TickClock"]

A = TypeVar("A")

# Audio that starts this close before the first video frame still counts as "at the start".
_START_TOLERANCE = 0.001


class StartGate(Generic[A]):
    """Holds early audio until the file's origin (the first video keyframe) is known.

    Audio received before the origin is trimmed: only audio with a presentation time at or
    after the origin is released, so both streams start together (audio at most one packet
    later than video). Without a video stream the first audio frame is the origin.
    """

    def __init__(self, hold_seconds: float, stats: StatsBook) -> None:
        self.origin: float | None = None
        self._hold = hold_seconds
        self._held: deque[tuple[A, float]] = deque()
        self._stats = stats

    def hold(self, item: A, t: float) -> None:
        self._held.append((item, t))
        while self._held and t - self._held[0][1] > self._hold:
            self._held.popleft()
            self._stats.skip_before_start()

    def peek(self, origin: float) -> list[A]:
        """What :meth:`open` would release, without opening."""
        return [item for item, t in self._held if t >= origin - _START_TOLERANCE]

    def open(self, origin: float) -> list[tuple[A, float]]:
        """Fix the origin; return the held audio that belongs in the file."""
        keep = [(item, t) for item, t in self._held if t >= origin - _START_TOLERANCE]
        # Audio a hair before the keyframe moves the origin back rather than being clamped
        # to 0, which would shift every later audio packet by that hair.
        self.origin = min([origin, *(t for _, t in keep)])
        self._stats.skip_before_start(len(self._held) - len(keep))
        self._held.clear()
        return keep

    def is_before_start(self, t: float) -> bool:
        return self.origin is None or t < self.origin - _START_TOLERANCE


class TickClock:
    """Seconds on the shared clock -> integer ticks since the origin, strictly increasing."""

    def __init__(self, rate: int, stats: StatsBook) -> None:
        self.rate = rate
        self.last: int | None = None
        # The container's resolution in our ticks (Matroska: 1 ms = 90 video ticks): two
        # timestamps closer than this would become equal in the file.
        self.step = 1
        self._stats = stats

    def set_resolution(self, time_base: Fraction) -> None:
        """Nudge in steps the container can tell apart (its stream ``time_base``)."""
        self.step = max(1, math.ceil(self.rate * time_base))

    def ticks(self, t: float, origin: float) -> int:
        value = max(0, round((t - origin) * self.rate))
        if self.last is not None and value < self.last + self.step:
            # Muxers need increasing timestamps: a duplicate or a clock step backwards is
            # nudged, and counted, instead of failing the recording.
            value = self.last + self.step
            self._stats.fixup()
        self.last = value
        return value
