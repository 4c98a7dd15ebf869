"""The figures of one receiver in one cell, computed the same way for us and for Chromium.

Both are measured over the same wall-clock window (``time.time()`` seconds). Ours come from
the arrival times of the frames our ``VideoStream`` yielded (freezes by
:class:`~avatar_rtc.media.freezes.FreezeMeter`); Chromium's from its W3C ``getStats()``
counters, sampled every 0.25 s (deltas between the samples that bound the window), and from the
frames its page was shown (``requestVideoFrameCallback``): their times and latencies.

Frame latency: from a frame's last packet to our consumer getting it / to Chromium presenting
it. Chromium's W3C freezes are timed at its renderer, so a receiver that shows frames later in
steady state starts each freeze later: an outage's freeze is shorter by the difference.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from avatar_rtc.media.freezes import FreezeMeter
from avatar_rtc.rtc.receiver import ReceiveStats
from tests.interop.peers.chromium_receiver.receiver import StatsSample


@dataclass
class ReceiverFigures:
    fps: float = 0.0  # decoded frames per second in the window
    freezes: int = 0
    freeze_seconds: float = 0.0
    freezes_per_min: float = 0.0
    # W3C pauses, not freezes (ours: >= 5 s without a frame; Chromium: its pauseCount)
    pauses: int | None = None
    # Chromium: jitterBufferDelay / emitted over the window; ours: the delay in force at the end
    playout_delay_ms: float | None = None
    frame_latency_ms: float | None = None  # median in the window (see the module docstring)
    residual_loss_pct: float | None = None  # packets never recovered / expected, whole run
    first_frame_wall: float | None = None
    first_frame_s: float | None = None  # since both receivers were started
    media_back_s: float | None = None  # first frame after the network came back
    last_frame_after_event_s: float | None = None  # last frame after the event (sender killed)
    error_after_event_s: float | None = None  # our typed error after the event
    error: str | None = None
    # ours: each freeze as (seconds into the window where it began, its length)
    freeze_at: list[tuple[float, float]] = field(default_factory=list)


def _rates(figures: ReceiverFigures, frames: int, freezes: int, frozen: float, span: float) -> None:
    figures.fps = frames / span if span > 0 else 0.0
    figures.freezes, figures.freeze_seconds = freezes, frozen
    figures.freezes_per_min = freezes / (span / 60) if span > 0 else 0.0


def ours(
    arrivals: Sequence[float], window: tuple[float, float], latencies: Sequence[float] = ()
) -> ReceiverFigures:
    """From our frames' arrival times: freezes are counted over the whole run (the rule needs
    the history) and kept when the frame that ended them arrived in the window. ``latencies``:
    each frame's, in seconds (the same order as ``arrivals``)."""
    start, end = window
    meter = FreezeMeter()
    frames = freezes = 0
    frozen = 0.0
    previous: float | None = None
    pauses = 0
    at: list[tuple[float, float]] = []
    for t in arrivals:
        paused = meter.pauses
        was_freeze = meter.add(t)
        if start < t <= end:
            pauses += meter.pauses - paused
            frames += 1
            if was_freeze and previous is not None:
                freezes += 1
                frozen += t - previous
                at.append((round(previous - start, 2), round(t - previous, 3)))
        previous = t
    figures = ReceiverFigures(
        first_frame_wall=arrivals[0] if arrivals else None, pauses=pauses, freeze_at=at
    )
    _rates(figures, frames, freezes, frozen, end - start)
    figures.frame_latency_ms = _median_ms(
        [lat for t, lat in zip(arrivals, latencies, strict=False) if start < t <= end]
    )
    return figures


def _median_ms(seconds: Sequence[float | None]) -> float | None:
    known = [s for s in seconds if s is not None]
    return 1000 * statistics.median(known) if known else None


def _at(samples: Sequence[StatsSample], t: float) -> StatsSample | None:
    """The last sample taken at or before ``t``."""
    before = [s for s in samples if s.wall <= t]
    return before[-1] if before else None


def chromium(samples: Sequence[StatsSample], window: tuple[float, float]) -> ReceiverFigures:
    start, end = window
    first = next((s.wall for s in samples if s.frames_decoded > 0), None)
    figures = ReceiverFigures(first_frame_wall=first)
    a, b = _at(samples, start), _at(samples, end)
    if a is None or b is None:
        return figures
    _rates(figures, b.frames_decoded - a.frames_decoded, b.freeze_count - a.freeze_count,
           b.total_freezes_duration - a.total_freezes_duration, b.wall - a.wall)  # fmt: skip
    figures.pauses = b.pause_count - a.pause_count
    # Freezes per minute of the window itself, as ours: equal counts read as equal rates.
    figures.freezes_per_min = figures.freezes / ((end - start) / 60) if end > start else 0.0
    emitted = b.jitter_buffer_emitted_count - a.jitter_buffer_emitted_count
    if emitted > 0:
        delay = b.jitter_buffer_delay - a.jitter_buffer_delay
        figures.playout_delay_ms = 1000 * delay / emitted
    figures.frame_latency_ms = _median_ms(
        [lat for s in samples for wall, lat in s.shown if start < wall <= end]
    )
    last = samples[-1]
    expected = last.packets_received + last.packets_lost
    figures.residual_loss_pct = 100 * last.packets_lost / expected if expected else None
    return figures


def our_residual_loss(video: ReceiveStats) -> float | None:
    """Per cent of the media packets never received, not even as a retransmission
    (``ReceiveStats.unrepaired``)."""
    return 100 * video.unrepaired / video.expected if video.expected > 0 else None


def first_after(times: Sequence[float], t: float) -> float | None:
    """Seconds from ``t`` to the first of ``times`` after it."""
    return next((x - t for x in times if x > t), None)


def chromium_frame_times(samples: Sequence[StatsSample]) -> list[float]:
    """When Chromium presented each frame; where its page could not tell (no
    ``requestVideoFrameCallback``), the walls of the samples at which it had decoded new
    frames (0.25 s resolution)."""
    shown = [wall for s in samples for wall, _ in s.shown]
    if shown:
        return shown
    return [b.wall for a, b in itertools.pairwise(samples)
            if b.frames_decoded > a.frames_decoded]  # fmt: skip
