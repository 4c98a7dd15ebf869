"""RetryPolicy math, Retry-After parsing and call_with_retry (no network)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from avatar_rtc.api import RetryPolicy, call_with_retry, is_retryable, parse_retry_after
from avatar_rtc.errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    NetworkError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SessionNotFoundError,
)


def test_backoff_grows_and_is_capped_without_jitter() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=3.0, jitter=False)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=10.0)
    assert policy.backoff(3, rng=lambda: 0.0) == 0.0
    assert policy.backoff(3, rng=lambda: 0.5) == 2.0
    assert all(0.0 <= policy.backoff(3) <= 4.0 for _ in range(200))


def test_delay_before_retry_stops_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=False, initial_delay=1.0)
    assert policy.delay_before_retry(1) == 1.0
    assert policy.delay_before_retry(2) == 2.0
    assert policy.delay_before_retry(3) is None


def test_retry_after_replaces_backoff_unless_too_long() -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_after=30.0)
    assert policy.delay_before_retry(1, retry_after=7.0) == 7.0
    assert policy.delay_before_retry(1, retry_after=31.0) is None


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigurationError):  # (a ValueError: was a bare one)
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(multiplier=0.5)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


def test_what_is_retryable() -> None:
    assert is_retryable(NetworkError("refused"))
    assert is_retryable(RequestTimeoutError("slow"))
    assert is_retryable(ServerError("x", status=503))
    assert is_retryable(RateLimitedError("x", status=429))
    assert not is_retryable(BadRequestError("x", status=400))
    assert not is_retryable(SessionNotFoundError("x", status=404))


class Flaky:
    """Fails with ``errors`` in order, then returns "ok"; counts calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002)


async def test_retries_retryable_errors_until_success() -> None:
    flaky = Flaky(ServerError("x", status=503), NetworkError("reset"))
    assert await call_with_retry(flaky, FAST) == "ok"
    assert flaky.calls == 3


async def test_gives_up_after_max_attempts() -> None:
    flaky = Flaky(*[ServerError("x", status=500) for _ in range(5)])
    with pytest.raises(ServerError):
        await call_with_retry(flaky, FAST)
    assert flaky.calls == 3


async def test_does_not_retry_client_errors() -> None:
    flaky = Flaky(BadRequestError("x", status=400))
    with pytest.raises(BadRequestError):
        await call_with_retry(flaky, FAST)
    assert flaky.calls == 1


async def test_waits_the_servers_retry_after() -> None:
    flaky = Flaky(ApiError("x", status=429, retry_after=0.3))
    started = time.monotonic()
    assert await call_with_retry(flaky, FAST) == "ok"
    assert time.monotonic() - started >= 0.3
