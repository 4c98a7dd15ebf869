"""The code stays mypy --strict (the library, its tests, scripts and examples), ruff and
import-linter clean (part of the suite, so CI runs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .support import require

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", "avatar_rtc", "tests", "scripts", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_never_prints() -> None:
    # The CLI prints; the library logs. ruff's T20 rule enforces it outside avatar_rtc/cli.
    result = _run("ruff", "check", "--select", "T20", "avatar_rtc")
    assert result.returncode == 0, result.stdout


def test_layers_are_one_way() -> None:
    # The contracts ([tool.importlinter] in pyproject.toml): the data path's layers, the
    # emulator beside them, no import cycle between sibling modules.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    require(lint_imports.exists(), "import-linter (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
