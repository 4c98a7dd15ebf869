"""Frames missing from what a consumer got, and whether the decoder accounts for them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from avatar_rtc.media.decoder import DecoderStats


def assert_no_unexplained_gaps(numbers: Sequence[int], decoder: DecoderStats) -> None:
    """``numbers``: the frame numbers a consumer got, in order (indices or a sender's counter).

    A decoder thread starved of CPU for longer than its input queue (8 frames) drops to the next
    keyframe by design and counts it (``dropped_behind``): on a busy machine that loss is the
    machine's, not the stream's. Any other gap is a frame lost.
    """
    pairs = list(itertools.pairwise(numbers))
    assert all(b > a for a, b in pairs), f"frames out of order: {list(numbers)}"
    gaps = [(a, b) for a, b in pairs if b != a + 1]
    missing = sum(b - a - 1 for a, b in gaps)
    behind = decoder.dropped_behind + decoder.skipped_to_keyframe if decoder.dropped_behind else 0
    assert missing <= behind, f"frames lost between {gaps}: {decoder}"
