"""What a correct A/V clock may show on a given run's arrivals (the A/V sync tests' yardstick).

Before RTCP sender reports, ``AvClock`` aligns video on audio through the fastest transit
(arrival minus RTP time) it has seen of each track so far. A receiver cannot know better than
its arrivals: while those fastest transits are still late (the start-up burst, a sender or a
receiver held up by a busy machine), arrival timing misplaces video by the difference of the two
tracks' lateness. The clock may follow that misplacement, and slews the residue away at
``slew_rate`` seconds per second of media once better arrivals (or sender reports) tell it so.

Nor can arrivals tell a sender whose video always leaves later after capture than its audio
(encoding, a busy sender): when the test has the sender's media times, it passes the tracks'
RTP-to-media offsets and the lateness is measured against the true capture times; without
them, the two tracks' fastest transits are taken as equal.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

from avatar_rtc.rtc.clock import AvClock
from avatar_rtc.rtc.encoded_frame import EncodedFrame

SLEW_RATE: float = inspect.signature(AvClock).parameters["slew_rate"].default  # session's clock
TOLERANCE = 0.020  # A/V alignment the sync tests hold the clock to, beyond the allowance


def arrival_allowance(
    frames: Sequence[EncodedFrame], media_offset: Mapping[str, float] | None = None
) -> dict[int, float]:
    """Video RTP timestamp -> how far, beyond the A/V tolerance, a correct clock may place that
    frame from audio, given the arrivals up to it. 0.0 once misplacements have slewed away.

    ``media_offset``: per kind, the sender's media time minus RTP seconds (RTP timestamp /
    clock rate), when the test knows them."""
    by_arrival = sorted(frames, key=lambda f: f.arrival_time)
    offset = media_offset or {}

    def transit(f: EncodedFrame) -> float:  # without offsets: up to a per-track constant
        return f.arrival_time - f.rtp_timestamp / f.clock_rate - offset.get(f.kind, 0.0)

    fastest = {k: min(transit(f) for f in by_arrival if f.kind == k) for k in ("audio", "video")}
    # Video ahead of all audio is aligned with where audio will start: its first arrival.
    first = {k: next(transit(f) for f in by_arrival if f.kind == k) for k in fastest}
    # Lateness against the true capture times when known, else against each track's fastest.
    base = {k: 0.0 for k in fastest} if media_offset is not None else fastest
    seen: dict[str, float] = {}
    misplaced: list[tuple[float, float]] = []  # (video media seconds, misplacement)
    allowance: dict[int, float] = {}
    for f in by_arrival:
        seen[f.kind] = min(seen.get(f.kind, math.inf), transit(f))
        if f.kind != "video":
            continue
        media = f.rtp_timestamp / f.clock_rate
        if f.clock_source == "arrival":
            late = {k: seen.get(k, first[k]) - base[k] for k in fastest}
            misplaced.append((media, abs(late["video"] - late["audio"])))
        residue = [m - SLEW_RATE * (media - at) for at, m in misplaced]
        allowance[f.rtp_timestamp] = max([*residue, 0.0])
    return allowance
