"""ReconnectPolicy: 300 ms doubling to 7 s with jitter, 10 attempts, all configurable."""

from __future__ import annotations

import dataclasses
import random

import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.options import SessionOptions
from avatar_rtc.rtc.reconnect import ReconnectPolicy


def test_default_backoff_doubles_from_300_ms_to_7_s() -> None:
    policy = dataclasses.replace(ReconnectPolicy(), jitter=0.0)
    delays = [policy.delay(n) for n in range(policy.max_attempts)]
    assert policy.max_attempts == 10
    assert delays == pytest.approx([0.3, 0.6, 1.2, 2.4, 4.8, 7.0, 7.0, 7.0, 7.0, 7.0])
    assert sum(delays) == pytest.approx(44.3)


def test_jitter_spreads_each_delay_within_its_band() -> None:
    policy = ReconnectPolicy()  # jitter 0.2
    rng = random.Random(7)
    for attempt in range(40):
        base = min(7.0, 0.3 * 2**attempt)
        samples = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(0.8 * base - 1e-9 <= d <= 1.2 * base + 1e-9 for d in samples)
        assert max(samples) - min(samples) > 0.1 * base  # really jittered


def test_session_options_carry_the_policy() -> None:
    assert SessionOptions().reconnect == ReconnectPolicy()
    off = SessionOptions(reconnect=ReconnectPolicy.disabled())
    assert not off.reconnect.enabled
    fast = SessionOptions(reconnect=ReconnectPolicy(media_timeout=0.5, max_attempts=3))
    assert fast.reconnect.media_timeout == 0.5 and fast.reconnect.max_attempts == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"media_timeout": 0},
        {"initial_delay": -1},
        {"max_delay": 0},
        {"attempt_timeout": 0},
        {"probe_interval": 0},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_attempts": 0},
    ],
)
def test_out_of_range_values_are_configuration_errors(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        ReconnectPolicy(**bad)  # type: ignore[arg-type]
