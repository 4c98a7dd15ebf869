"""Tell a dropout from a pause by the mouth: a talker who pauses closes the mouth and keeps it
still; when the sound drops out, the picture goes on talking.

The audio alone proposes candidates (abrupt silences inside speech, see :mod:`.audio`). With
the mouth measured, a candidate is kept only if, away from its edges, the mouth is as open or
moves as much as it does in speech: above the midpoint between its mean during speech and its
mean outside speech. A candidate too short to hold two frames away from its edges cannot be
judged by the mouth and is dropped. The picture is read where the sound belongs to it: shifted
by the measured lip-sync offset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .spans import Span

__all__ = ["confirm_by_mouth"]

Floats = npt.NDArray[np.float64]

EDGE = 0.06  # seconds left out at each edge: the mouth closing or opening there is normal
MIN_SAMPLES = 2
MIN_REFERENCE = 10  # samples needed in speech and outside it for a midpoint


def confirm_by_mouth(
    candidates: list[Span],
    speech: list[Span],
    times: Floats,
    openness: Floats,
    motion_times: Floats,
    motion: Floats,
    offset: float = 0.0,
    blind: Sequence[Span] = (),
) -> list[Span] | None:
    """The candidates during which the mouth went on talking; None if the mouth cannot tell
    (too few measurements in speech or outside it). ``offset``: the lip-sync offset in seconds
    (positive: the sound comes first, so the picture of a sound comes later). ``blind``:
    where the picture shows no mouth at work (frozen, black; on the picture's clock): its
    measurements are left out (a mouth frozen open looked like one talking through a pause)."""
    if blind:
        seen = ~_inside(times, list(blind))
        times, openness = times[seen], openness[seen]
        seen = ~_inside(motion_times, list(blind))
        motion_times, motion = motion_times[seen], motion[seen]
    times, motion_times = times - offset, motion_times - offset  # on the sound's clock
    open_mid = _midpoint(times, openness, speech, candidates)
    motion_mid = _midpoint(motion_times, motion, speech, candidates)
    if open_mid is None or motion_mid is None:
        return None
    kept = []
    for gap in candidates:
        inner = Span(gap.start + EDGE, gap.duration - 2 * EDGE)
        if inner.duration <= 0:
            continue
        opened = _mean_within(times, openness, [inner])
        moved = _mean_within(motion_times, motion, [inner])
        if opened is None or moved is None:
            continue
        if opened >= open_mid or moved >= motion_mid:
            kept.append(gap)
    return kept


def _inside(times: Floats, spans: list[Span]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(len(times), dtype=bool)
    for s in spans:
        mask |= (times >= s.start) & (times < s.end)
    return mask


def _mean_within(times: Floats, values: Floats, spans: list[Span]) -> float | None:
    mask = _inside(times, spans)
    return float(values[mask].mean()) if np.count_nonzero(mask) >= MIN_SAMPLES else None


def _midpoint(
    times: Floats, values: Floats, speech: list[Span], candidates: list[Span]
) -> float | None:
    gaps = _inside(times, candidates)
    talking = _inside(times, speech) & ~gaps
    quiet = ~_inside(times, speech) & ~gaps
    if np.count_nonzero(talking) < MIN_REFERENCE or np.count_nonzero(quiet) < MIN_REFERENCE:
        return None
    return float((values[talking].mean() + values[quiet].mean()) / 2.0)
