"""Shared pytest configuration."""

from __future__ import annotations

import os

import pytest

from avatar_rtc.redact import install_log_redaction

install_log_redaction()

# pytest-xdist workers for ``-n auto`` (pyproject's addopts). The suite spends most of its time
# waiting on sessions: two workers took it from ~1410 s to ~780-860 s on two cores while a third
# process kept one of them busy, without a flake once mended. More workers are not proven so.
MAX_WORKERS = 2


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return min(MAX_WORKERS, os.cpu_count() or 1)
