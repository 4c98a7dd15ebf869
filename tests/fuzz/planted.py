"""Secrets planted in fuzzed inputs, and the check every fuzz case ends with.

The values are the kinds the client holds as :class:`~avatar_rtc.redact.Secret` (a KS, a
session JWT, a TURN credential): creating them here registers them for redaction, as the
client does when it receives them. A fuzz case may put them anywhere in what a server sends;
none may then show in the error, its ``repr``, its traceback (chained causes included) or a
log line, not even in part (an excerpt cut inside a secret would leak its start).
"""

from __future__ import annotations

import asyncio
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from avatar_rtc.errors import AvatarRTCError
from avatar_rtc.redact import Secret

__all__ = [
    "CASES",
    "DEADLINE",
    "JWT",
    "KS",
    "SECRETS",
    "TURN_CREDENTIAL",
    "TURN_USERNAME",
    "assert_no_secret",
    "check_outcome",
    "outcome_of",
]

T = TypeVar("T")

# Random-looking, with no English word or number as long as a leak window.
KS = Secret("KsQ7x9f4cZe7a1b8d3f6Waa5e")
JWT = Secret("eyJ0a8F3kQvB.eyJ9cZ4mW2pYh.Xq7Lr5Vt8Nw3Jd")
TURN_USERNAME = Secret("Tu4Hq2Zp9WcR:qKv8Ym3Rt")
TURN_CREDENTIAL = Secret("Cr6Jn5Bw2Lx9Pz4Hk7Sd")
SECRETS: tuple[str, ...] = tuple(s.reveal() for s in (KS, JWT, TURN_USERNAME, TURN_CREDENTIAL))

# A hang guard per case: generous (a busy machine), far below a real hang.
DEADLINE = 15.0
# Cases run per fuzz area (tests/fuzz/conftest.py prints them).
CASES: Counter[str] = Counter()
# A window this long of a secret counts as a leak (the secrets have no shorter repeats).
_WINDOW = 10


def assert_no_secret(text: str, where: str) -> None:
    """Fail when any planted secret, or a piece of one, shows in ``text``."""
    for secret in SECRETS:
        for start in range(len(secret) - _WINDOW + 1):
            at = text.find(secret[start : start + _WINDOW])
            assert at == -1, f"secret (or part of it) in {where}: {text[at - 80 : at + 80]!r}"


def check_outcome(error: BaseException | None, logs: str) -> None:
    """A case ended well: no error or a typed one, and no secret in what it shows."""
    if error is not None:
        shown = "".join(traceback.format_exception(error))
        assert isinstance(error, AvatarRTCError), f"untyped exception:\n{shown}"
        assert_no_secret(str(error), "str(error)")
        assert_no_secret(repr(error), "repr(error)")
        assert_no_secret(shown, "the traceback")
    assert_no_secret(logs, "the logs")


async def outcome_of(
    action: Callable[[], Awaitable[T]], deadline: float = DEADLINE
) -> tuple[T | None, BaseException | None]:
    """Run ``action``; its result or the exception it ended with. A hang fails the case."""
    guard = asyncio.timeout(deadline)
    try:
        async with guard:
            return await action(), None
    except Exception as error:  # judged by check_outcome
        if guard.expired():
            raise AssertionError(f"hang: no outcome within {deadline:g} s") from None
        return None, error
