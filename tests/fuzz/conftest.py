"""Fuzz settings shared by the areas, and the case counts printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from avatar_rtc import redact

from .planted import CASES


@pytest.fixture(autouse=True)
def forget_fuzzed_secrets() -> Iterator[None]:
    """Fuzzed bodies register random short strings as TURN credentials ("audio"...): the
    registry is process-wide, so later tests would see those words masked. Forget them."""
    before = set(redact._registered)
    yield
    with redact._lock:
        redact._registered.intersection_update(before)


def fuzz_settings(max_examples: int) -> settings:
    """No per-example deadline (``planted.outcome_of`` guards hangs with a generous one, a
    busy machine must not fail a case), no example database left in the work tree."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASES:
        counts = ", ".join(f"{area} {count}" for area, count in sorted(CASES.items()))
        terminalreporter.write_line(f"fuzz cases: {sum(CASES.values())} ({counts})")
