"""FreezeMeter against the W3C webrtc-stats freeze rule on constructed frame sequences."""

from __future__ import annotations

import pytest

from avatar_rtc.media.freezes import FreezeMeter

FRAME = 0.040  # 25 fps


def feed(intervals: list[float]) -> FreezeMeter:
    meter = FreezeMeter()
    t = 100.0
    meter.add(t)
    for interval in intervals:
        t += interval
        meter.add(t)
    return meter


def test_steady_stream_has_no_freeze() -> None:
    meter = feed([FRAME] * 500)
    assert (meter.count, meter.total_duration, meter.frames) == (0, 0.0, 501)


def test_gap_over_mean_plus_150_ms_is_one_freeze_of_its_whole_length() -> None:
    # mean 40 ms: threshold max(120, 190) = 190 ms
    meter = feed([FRAME] * 40 + [0.400] + [FRAME] * 40)
    assert meter.count == 1
    assert meter.total_duration == pytest.approx(0.400)


def test_threshold_is_inclusive_and_just_below_is_not_a_freeze() -> None:
    # binary-exact times (1/8 s frames: threshold max(375, 275) ms) to test the equality
    assert feed([0.125] * 30 + [0.375]).count == 1  # "equal or exceeds"
    assert feed([0.125] * 30 + [0.374]).count == 0
    assert feed([FRAME] * 30 + [0.191]).count == 1  # 25 fps: mean + 150 ms rules
    assert feed([FRAME] * 30 + [0.189]).count == 0


def test_three_times_the_mean_rules_for_slow_streams() -> None:
    # 5 fps: mean 200 ms, threshold max(600, 350) = 600 ms
    assert feed([0.2] * 30 + [0.590]).count == 0
    assert feed([0.2] * 30 + [0.601]).count == 1


def test_mean_is_of_the_last_30_intervals_only() -> None:
    # 30 slow intervals (200 ms) pushed out by 30 fast ones: the threshold is back to 190 ms
    assert feed([0.2] * 30 + [FRAME] * 30 + [0.300]).count == 1
    # with only 29 fast ones one slow interval remains: mean 45.3 ms, threshold 195.3 ms
    assert feed([0.2] * 30 + [FRAME] * 29 + [0.195]).count == 0


def test_freezes_enter_the_mean() -> None:
    # a 1 s freeze raises the mean of the next intervals: a 250 ms gap right after it
    # (mean (29*40 + 1000)/30 = 72 ms, threshold 222 ms) is a freeze, one of 200 ms is not.
    assert feed([FRAME] * 30 + [1.0, 0.250]).count == 2
    assert feed([FRAME] * 30 + [1.0, 0.200]).count == 1


def test_no_freeze_before_five_intervals() -> None:
    assert feed([FRAME] * 4 + [2.0]).count == 0
    assert feed([FRAME] * 5 + [2.0]).count == 1


def test_several_freezes_add_up() -> None:
    meter = feed(([FRAME] * 50 + [0.5]) * 3 + [FRAME] * 10)
    assert meter.count == 3
    assert meter.total_duration == pytest.approx(1.5)


def test_five_seconds_or_more_is_a_pause_not_a_freeze() -> None:
    meter = feed([FRAME] * 30 + [4.9] + [FRAME] * 30 + [5.0] + [FRAME] * 3 + [1.0])
    assert (meter.count, meter.pauses) == (1, 1)  # the 1 s gap: too few intervals since
    assert meter.total_duration == pytest.approx(4.9)
    assert meter.pause_duration == pytest.approx(5.0)
    assert feed([FRAME] * 30 + [5.0] + [FRAME] * 5 + [1.0]).count == 1
