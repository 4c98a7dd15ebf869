"""What a correct A/V clock may show on a given run's arrivals (the A/V sync tests' yardstick).

Before RTCP sender reports, ``AvClock`` aligns video on audio through the fastest transit
(arrival minus RTP time) it has seen of each track so far. A receiver cannot know better than
its arrivals: while those fastest transits are still late (the start-up burst, a sender or a
receiver held up by a busy machine), arrival timing misplaces video by the difference of the two
tracks' lateness. The clock may follow that misplacement, and slews the residue away at
``slew_rate`` seconds per second of media once better arrivals (or sender reports) tell it so.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

from avatar_rtc.rtc.clock import AvClock
from avatar_rtc.rtc.encoded_frame import EncodedFrame

SLEW_RATE: float = inspect.signature(AvClock).parameters["slew_rate"].default  # session's clock


def arrival_allowance(frames: Sequence[EncodedFrame]) -> dict[int, float]:
    """Video RTP timestamp -> how far, beyond the A/V tolerance, a correct clock may place that
    frame from audio, given the arrivals up to it. 0.0 once misplacements have slewed away."""
    by_arrival = sorted(frames, key=lambda f: f.arrival_time)

    def transit(f: EncodedFrame) -> float:  # up to a per-track constant, which cancels below
        return f.arrival_time - f.rtp_timestamp / f.clock_rate

    fastest = {k: min(transit(f) for f in by_arrival if f.kind == k) for k in ("audio", "video")}
    seen: dict[str, float] = {}
    misplaced: list[tuple[float, float]] = []  # (video media seconds, misplacement)
    allowance: dict[int, float] = {}
    for f in by_arrival:
        seen[f.kind] = min(seen.get(f.kind, math.inf), transit(f))
        if f.kind != "video":
            continue
        media = f.rtp_timestamp / f.clock_rate
        if f.clock_source == "arrival":
            late = {k: seen.get(k, fastest[k]) - fastest[k] for k in fastest}
            misplaced.append((media, abs(late["video"] - late["audio"])))
        residue = [m - SLEW_RATE * (media - at) for at, m in misplaced]
        allowance[f.rtp_timestamp] = max([*residue, 0.0])
    return allowance
