"""When to try a request again: backoff with full jitter, the server's ``Retry-After``, a deadline.

:func:`call_with_retry` repeats an operation while ``advise(error)`` says the failure is worth
another try. The default advice (:func:`default_advice`) retries transport failures, 429 and
5xx, waiting what the server's ``Retry-After`` asks for; a protocol with other rules (WHEP
retries 409 only with a ``Retry-After``) passes its own. Only requests that are safe to repeat
should go through it: the Control API's create, init-client and say-* open something on the
service each time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from ..errors import AvatarRTCError, ConfigurationError, HttpStatusError, TransportError

__all__ = [
    "Advice",
    "Retry",
    "RetryPolicy",
    "call_with_retry",
    "default_advice",
    "is_retryable",
    "parse_retry_after",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a safe call.

    ``max_attempts`` counts the first call. The backoff before retry *n* (1-based) is
    drawn uniformly from ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]``
    ("full jitter") unless ``jitter`` is off. A server ``Retry-After`` replaces the
    backoff; one longer than ``max_retry_after`` ends the retries. With a ``deadline``
    (seconds from the first attempt), a wait that would end past it ends them too.
    """

    max_attempts: int = 4
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 8.0
    jitter: bool = True
    max_retry_after: float = 60.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ConfigurationError("delays must be >= 0 and multiplier >= 1")

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


@dataclass(frozen=True, slots=True)
class Retry:
    """Advice that a failed attempt may be repeated; ``after``: the server's wait, if given."""

    after: float | None = None


Advice = Callable[[AvatarRTCError], Retry | None]
"""Whether a failure is worth another try (``None``: it is not)."""


def is_retryable(error: AvatarRTCError) -> bool:
    """Transport failures, 429 and 5xx are worth another try; other 4xx are not."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, HttpStatusError) and (error.status == 429 or error.status >= 500)


def default_advice(error: AvatarRTCError) -> Retry | None:
    """Retry what :func:`is_retryable` accepts, after the server's ``Retry-After`` if any."""
    if not is_retryable(error):
        return None
    return Retry(error.retry_after if isinstance(error, HttpStatusError) else None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds (``"1.5"`` accepted) or HTTP-date.

    A date in the past and a negative delay mean "now" (0); ``None`` when unusable.
    """
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
    advise: Advice = default_advice,
) -> T:
    """Await ``operation()`` until it succeeds, retrying what ``advise`` allows per ``policy``.

    The last error is raised when the attempts, the ``Retry-After`` limit or the deadline
    run out.
    """
    started = time.monotonic()
    retry_number = 0
    while True:
        try:
            return await operation()
        except AvatarRTCError as error:
            advice = advise(error)
            if advice is None:
                raise
            retry_number += 1
            delay = policy.delay_before_retry(retry_number, advice.after)
            if delay is None:
                raise
            if (
                policy.deadline is not None
                and time.monotonic() - started + delay >= policy.deadline
            ):
                raise
            _log.info("%s failed (%s); retry %d in %.2f s", name, error, retry_number, delay)
            await asyncio.sleep(delay)
