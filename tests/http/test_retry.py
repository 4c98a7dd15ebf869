"""The shared retry loop: advice, deadline (RetryPolicy math is in tests/api/test_retry.py)."""

from __future__ import annotations

import pytest

from avatar_rtc.errors import (
    AvatarRTCError,
    BadRequestError,
    NetworkError,
    ServerError,
    WhepError,
)
from avatar_rtc.http.retry import (
    Retry,
    RetryPolicy,
    call_with_retry,
    default_advice,
    parse_retry_after,
)

from ..api.test_retry import Flaky


def test_decimal_delta_seconds_are_accepted() -> None:
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("0.25") == 0.25


def test_default_advice_takes_the_hint_of_any_http_status_error() -> None:
    assert default_advice(WhepError("x", status=503, retry_after=0.25)) == Retry(0.25)
    assert default_advice(ServerError("x", status=500)) == Retry(None)
    assert default_advice(NetworkError("refused")) == Retry(None)
    assert default_advice(BadRequestError("x", status=400)) is None


async def test_a_wait_past_the_deadline_ends_the_retries() -> None:
    policy = RetryPolicy(max_attempts=5, deadline=0.2)
    flaky = Flaky(ServerError("x", status=503, retry_after=0.3))
    with pytest.raises(ServerError):
        await call_with_retry(flaky, policy)
    assert flaky.calls == 1


async def test_backoff_retries_until_the_deadline() -> None:
    # The 1st retry waits 0.03 s (inside 0.05), the 2nd would wait 0.06 s: past the deadline.
    policy = RetryPolicy(max_attempts=9, initial_delay=0.03, jitter=False, deadline=0.05)
    flaky = Flaky(*[ServerError("x", status=503) for _ in range(5)])
    with pytest.raises(ServerError):
        await call_with_retry(flaky, policy)
    assert flaky.calls == 2


async def test_the_callers_advice_decides_what_is_retried() -> None:
    def only_bad_requests(error: AvatarRTCError) -> Retry | None:
        return Retry(0.0) if isinstance(error, BadRequestError) else None

    fast = RetryPolicy(max_attempts=3)
    flaky = Flaky(BadRequestError("x", status=400))
    assert await call_with_retry(flaky, fast, advise=only_bad_requests) == "ok"
    assert flaky.calls == 2
    flaky = Flaky(ServerError("x", status=503))
    with pytest.raises(ServerError):
        await call_with_retry(flaky, fast, advise=only_bad_requests)
    assert flaky.calls == 1
