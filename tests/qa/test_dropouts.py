"""A silence inside speech is a dropout only if the mouth went on talking through it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_rtc.qa.dropouts import confirm_by_mouth
from avatar_rtc.qa.spans import Span

FPS = 25
SPEECH = [Span(1.0, 3.0), Span(4.6, 3.0)]  # a 0.6 s gap between the two
GAP = Span(4.0, 0.6)

Floats = npt.NDArray[np.float64]


def mouth(talking_in_gap: bool) -> tuple[Floats, Floats, Floats, Floats]:
    """Openness and motion per frame: open and moving while speaking, shut and still else."""
    times = np.arange(0, 9.0, 1 / FPS)
    speaking = np.zeros(len(times), dtype=bool)
    for s in [*SPEECH, GAP] if talking_in_gap else SPEECH:
        speaking |= (times >= s.start) & (times < s.end)
    rng = np.random.default_rng(3)
    openness = np.where(speaking, 60.0, 10.0) + rng.normal(0, 3, len(times))
    motion = np.where(speaking, 8.0, 0.5) + rng.normal(0, 0.5, len(times))
    return times, openness, times + 0.5 / FPS, motion


def test_kept_when_the_mouth_keeps_talking() -> None:
    assert confirm_by_mouth([GAP], SPEECH, *mouth(talking_in_gap=True)) == [GAP]


def test_dropped_when_the_mouth_pauses_too() -> None:
    assert confirm_by_mouth([GAP], SPEECH, *mouth(talking_in_gap=False)) == []


def test_the_mouth_is_read_where_the_sound_belongs_to_it() -> None:
    # The picture 0.3 s late (the sound first: offset +0.3 s): the mouth's pause comes 0.3 s
    # after the sound's.
    times, openness, motion_times, motion = mouth(talking_in_gap=False)
    late = (times + 0.3, openness, motion_times + 0.3, motion)
    assert confirm_by_mouth([GAP], SPEECH, *late, offset=0.3) == []
    # Read at the sound's own times, that mouth would still be talking at the gap's start.
    mid_gap_shifted = confirm_by_mouth([Span(3.9, 0.6)], SPEECH, *late)
    assert mid_gap_shifted == [Span(3.9, 0.6)]


def test_too_short_to_judge_is_dropped() -> None:
    short = Span(4.0, 0.1)  # nothing left between its 60 ms edges
    assert confirm_by_mouth([short], SPEECH, *mouth(talking_in_gap=True)) == []


def test_no_verdict_without_enough_mouth_outside_speech() -> None:
    times, openness, motion_times, motion = mouth(talking_in_gap=True)
    inside = (times >= 1.0) & (times < 7.6)
    result = confirm_by_mouth(
        [GAP], SPEECH, times[inside], openness[inside], motion_times[inside], motion[inside]
    )
    assert result is None
