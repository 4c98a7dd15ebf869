"""The library stays mypy --strict and ruff clean (part of the suite, so CI runs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", "avatar_rtc")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_never_prints() -> None:
    # The CLI prints; the library logs. ruff's T20 rule enforces it outside avatar_rtc/cli.
    result = _run("ruff", "check", "--select", "T20", "avatar_rtc")
    assert result.returncode == 0, result.stdout
