"""The per-receiver figures of a cell, on constructed frame times and getStats() samples."""

from __future__ import annotations

import pytest

from tests.interop.impairment import metrics
from tests.interop.peers.chromium_receiver.receiver import StatsSample
from tests.rtc.test_receive_stats import receive_stats

T0 = 1000.0


def test_ours_counts_frames_and_freezes_in_the_window_only() -> None:
    # 25 fps for 10 s with a 0.5 s gap at 5 s (one freeze); window [2, 8]
    arrivals = [T0 + i * 0.04 for i in range(125)] + [T0 + 5.5 + i * 0.04 for i in range(113)]
    figures = metrics.ours(arrivals, (T0 + 2, T0 + 8))
    assert figures.freezes == 1
    assert figures.freeze_seconds == pytest.approx(0.54)
    assert figures.freezes_per_min == pytest.approx(10.0)
    assert figures.fps == pytest.approx((6 - 0.54) * 25 / 6, abs=0.2)
    assert figures.first_frame_wall == T0
    assert metrics.ours(arrivals, (T0 + 6, T0 + 8)).freezes == 0  # the freeze ended before


def _sample(i: int) -> StatsSample:
    """Sample ``i`` of a 25 fps stream: a freeze of 0.3 s every 5 s, 1 % loss."""
    return StatsSample(wall=T0 + i * 0.25, frames_decoded=int(i * 6.25), freeze_count=i // 20,
                       total_freezes_duration=0.3 * (i // 20), packets_received=100 * i,
                       packets_lost=i)  # fmt: skip


def test_chromium_takes_counter_deltas_between_the_bounding_samples() -> None:
    samples = [_sample(i) for i in range(41)]
    figures = metrics.chromium(samples, (T0 + 2, T0 + 8))  # samples 8 and 32
    assert figures.fps == pytest.approx((200 - 50) / 6)
    assert figures.freezes == 1
    assert figures.freeze_seconds == pytest.approx(0.3)
    assert figures.residual_loss_pct == pytest.approx(100 * 40 / 4040)
    assert figures.first_frame_wall == T0 + 0.25


def test_our_residual_loss_is_the_unrepaired_share() -> None:
    # 1000 sent, 50 first transmissions lost, 48 came back as RTX: 2 never
    video = receive_stats(packets=950 + 48, rtx_packets=48, lost=50, recovered_packets=48)
    assert metrics.our_residual_loss(video) == pytest.approx(0.2)
    assert metrics.our_residual_loss(receive_stats()) is None


def test_media_back_and_chromium_frame_times() -> None:
    assert metrics.first_after([1.0, 2.0, 5.5], 3.0) == 2.5
    assert metrics.first_after([1.0], 3.0) is None
    samples = [StatsSample(wall=w, frames_decoded=n) for w, n in ((1, 5), (2, 5), (3, 9))]
    assert metrics.chromium_frame_times(samples) == [3]  # no frame times: the samples'
    samples[2].shown = [(2.5, 0.01), (2.9, None)]
    assert metrics.chromium_frame_times(samples) == [2.5, 2.9]


def test_frame_latency_is_the_median_in_the_window() -> None:
    arrivals = [T0 + i * 0.04 for i in range(100)]
    latencies = [0.001 * (i % 10) for i in range(100)]  # 0..9 ms
    figures = metrics.ours(arrivals, (T0 + 1, T0 + 3), latencies)
    assert figures.frame_latency_ms == pytest.approx(4.5)
    assert metrics.ours(arrivals, (T0 + 1, T0 + 3)).frame_latency_ms is None
    samples = [_sample(i) for i in range(41)]
    samples[10].shown = [(T0 + 2.4, 0.020), (T0 + 2.44, None), (T0 + 2.48, 0.030)]
    samples[39].shown = [(T0 + 9.7, 0.5)]  # outside the window
    assert metrics.chromium(samples, (T0 + 2, T0 + 8)).frame_latency_ms == pytest.approx(25.0)
