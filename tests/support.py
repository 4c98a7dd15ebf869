"""Test helpers. Interop peers may skip on a laptop but fail when CI is set."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when an external peer is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available")


def require_tool(name: str) -> str:
    """Path of executable ``name``; skip locally / fail in CI when absent."""
    path = shutil.which(name)
    require(path is not None, f"executable {name!r}")
    assert path is not None
    return path
