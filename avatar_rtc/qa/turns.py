"""Turns of a live session: how long after each ``say`` the avatar was heard and seen to talk.

A **turn** is one ``say``/``say_audio``. Its clock starts when the call is *issued* (before the
request goes out, so the Control API's round trip counts: it is part of what a user waits for).
Its window ends where the next turn's starts (or with the session).

- **speech latency**: issued -> the start of the first speech segment (:mod:`.audio`) in the
  window: the first 10 ms of audible speech, at its presentation time.
- **mouth latency**: issued -> the first frame in the window whose mouth opening rises above
  its rest level by ``MOUTH_RISE`` of the session's opening range (2nd to 98th percentile);
  the rest level is the median opening of the half second before the turn (else the 2nd
  percentile). The opening is :mod:`.mouth`'s darkness of the mouth box.

Across the turns: P50/P95/P99 of each latency, interpolated linearly between the ranked values
(numpy's default: P99 of a few turns is close to the largest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .spans import Span

__all__ = ["Say", "Turn", "latency_percentiles", "measure_turns"]

Floats = npt.NDArray[np.float64]

MOUTH_RISE = 0.2  # of the session's opening range
REST_WINDOW = 0.5  # seconds before the say whose median opening is the rest level
MIN_REST_FRAMES = 3
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True, slots=True)
class Say:
    """One ``say`` as the client saw it; times on the analysers' clock (seconds)."""

    turn_id: str
    text: str
    issued: float
    answered: float  # when the call returned


@dataclass(frozen=True, slots=True)
class Turn:
    say: Say
    speech_start: float | None  # None: no speech heard in the turn's window
    mouth_open: float | None  # None: the mouth did not open (or was not measured)

    @property
    def speech_latency(self) -> float | None:
        return None if self.speech_start is None else self.speech_start - self.say.issued

    @property
    def mouth_latency(self) -> float | None:
        return None if self.mouth_open is None else self.mouth_open - self.say.issued

    def to_dict(self, origin: float) -> dict[str, Any]:
        return {
            "turn_id": self.say.turn_id,
            "text": self.say.text,
            "say_s": round(self.say.issued - origin, 3),
            "request_s": round(self.say.answered - self.say.issued, 3),
            "speech_s": _round(self.speech_start, origin),
            "mouth_s": _round(self.mouth_open, origin),
            "speech_latency_s": _round(self.speech_latency),
            "mouth_latency_s": _round(self.mouth_latency),
        }


def _round(value: float | None, origin: float = 0.0) -> float | None:
    return None if value is None else round(value - origin, 3)


def latency_percentiles(values: Sequence[float | None]) -> dict[str, float | None]:
    """``p50``/``p95``/``p99`` of the measured values (None ones left out), in seconds."""
    measured = [v for v in values if v is not None]
    if not measured:
        return {f"p{p}": None for p in PERCENTILES}
    found = np.percentile(np.asarray(measured, dtype=np.float64), PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, found, strict=True)}


def measure_turns(
    says: Sequence[Say],
    speech: Sequence[Span],
    mouth_times: Floats,
    mouth_openness: Floats,
    end: float,
) -> list[Turn]:
    """Each say's first speech and first mouth opening in its window (until the next say or
    ``end``)."""
    ordered = sorted(says, key=lambda s: s.issued)
    mouth = _MouthRise(mouth_times, mouth_openness)
    turns = []
    for i, say in enumerate(ordered):
        until = ordered[i + 1].issued if i + 1 < len(ordered) else end
        start = next((s.start for s in speech if say.issued <= s.start < until), None)
        turns.append(Turn(say, start, mouth.first_after(say.issued, until)))
    return turns


class _MouthRise:
    """When the mouth first opens after a given time (see the module docstring)."""

    def __init__(self, times: Floats, openness: Floats) -> None:
        self.times, self.openness = times, openness
        if len(openness):
            low, high = np.percentile(openness, [2, 98])
            self.low, self.rise = float(low), MOUTH_RISE * float(high - low)
        else:
            self.low, self.rise = 0.0, 0.0

    def first_after(self, start: float, until: float) -> float | None:
        if self.rise <= 0:
            return None  # never measured, or never moved
        before = (self.times >= start - REST_WINDOW) & (self.times < start)
        rest = (
            float(np.median(self.openness[before]))
            if np.count_nonzero(before) >= MIN_REST_FRAMES
            else self.low
        )
        window = (self.times >= start) & (self.times < until)
        opened = np.flatnonzero(window & (self.openness >= rest + self.rise))
        return float(self.times[opened[0]]) if len(opened) else None
