"""Stretches of time (freezes, black, silences...) and finding them in per-sample flags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Span", "true_runs"]


@dataclass(frozen=True, slots=True)
class Span:
    """``duration`` seconds from ``start`` (seconds on the analyser's clock)."""

    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration

    def shifted(self, origin: float) -> Span:
        """The same span on a clock whose zero is at ``origin``."""
        return Span(self.start - origin, self.duration)

    def to_dict(self) -> dict[str, float]:
        return {"start_s": round(self.start, 3), "duration_s": round(self.duration, 3)}


def true_runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``(first, stop)`` index pairs of every run of ``True`` (``stop`` excluded)."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]
