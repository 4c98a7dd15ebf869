"""Video freezes by the W3C rule (webrtc-stats ``freezeCount`` / ``totalFreezesDuration``).

A frame interval (time between two consecutive frames) is a freeze when it is equal to or
longer than ``max(3 * avg, avg + 150 ms)``, ``avg`` being the mean of the last 30 intervals
before it. Like libwebrtc (``VideoQualityObserver``), nothing counts before 5 intervals are
known (the mean of one or two intervals is noise), and every interval, freezes included,
enters the mean. A freeze's duration is its whole interval. An interval of 5 s or more is a
*pause* (W3C ``pauseCount`` / ``totalPausesDuration``), not a freeze; the mean starts over
after it.

Feed it monotonic arrival times of the frames a consumer gets (our decoded frames); Chromium
applies the same rule to the frames it renders.
"""

from __future__ import annotations

from collections import deque

__all__ = ["FreezeMeter"]

WINDOW = 30  # intervals in the running mean
MIN_INTERVALS = 5  # intervals needed before a freeze can be told
MIN_INCREASE = 0.150  # seconds over the mean
PAUSE = 5.0  # seconds: a longer interval is a pause


class FreezeMeter:
    """Counts freezes in a sequence of frame times (seconds, non-decreasing)."""

    def __init__(self) -> None:
        self.count = 0
        self.total_duration = 0.0
        self.frames = 0
        self.pauses = 0
        self.pause_duration = 0.0
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=WINDOW)

    def add(self, t: float) -> bool:
        """One frame at ``t``; whether the interval that ended with it was a freeze."""
        self.frames += 1
        last, self._last = self._last, t
        if last is None:
            return False
        interval = t - last
        if interval >= PAUSE:
            self.pauses += 1
            self.pause_duration += interval
            self._intervals.clear()
            return False
        frozen = False
        if len(self._intervals) >= MIN_INTERVALS:
            avg = sum(self._intervals) / len(self._intervals)
            frozen = interval >= max(3 * avg, avg + MIN_INCREASE)
        if frozen:
            self.count += 1
            self.total_duration += interval
        self._intervals.append(interval)
        return frozen
