"""Retries with exponential backoff, full jitter and ``Retry-After``.

Only idempotent Control API calls (keep-alive, end, catalog list) go through
:func:`call_with_retry`: create, init-client, say-text and say-audio each open a
resource or a speaking turn on the service, so repeating them is not safe.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from ..errors import ApiError, AvatarRTCError, TransportError

__all__ = ["RetryPolicy", "call_with_retry", "is_retryable", "parse_retry_after"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a safe call.

    ``max_attempts`` counts the first call. The backoff before retry *n* (1-based) is
    drawn uniformly from ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]``
    ("full jitter") unless ``jitter`` is off. A server ``Retry-After`` replaces the
    backoff; one longer than ``max_retry_after`` ends the retries.
    """

    max_attempts: int = 4
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 8.0
    jitter: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based), without a server hint."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (retry_number - 1))
        return ceiling * rng() if self.jitter else ceiling

    def delay_before_retry(
        self,
        retry_number: int,
        retry_after: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retry ``retry_number`` (1-based), or ``None`` to give up."""
        if retry_number >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self.backoff(retry_number, rng)


def is_retryable(error: AvatarRTCError) -> bool:
    """Transport failures, 429 and 5xx are worth another try; other 4xx are not."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, ApiError) and (error.status == 429 or error.status >= 500)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or HTTP-date); ``None`` if unusable."""
    if value is None or not value.strip():
        return None
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until_http_date(value.strip(), now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until_http_date(value: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()


async def call_with_retry(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    name: str = "request",
) -> T:
    """Await ``operation()`` until it succeeds, retrying retryable errors per ``policy``."""
    retry_number = 0
    while True:
        try:
            return await operation()
        except AvatarRTCError as error:
            if not is_retryable(error):
                raise
            retry_number += 1
            retry_after = error.retry_after if isinstance(error, ApiError) else None
            delay = policy.delay_before_retry(retry_number, retry_after)
            if delay is None:
                raise
            _log.info("%s failed (%s); retry %d in %.2f s", name, error, retry_number, delay)
            await asyncio.sleep(delay)
