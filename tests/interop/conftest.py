"""Fixtures that run independent WebRTC stacks as WHEP senders (one process per test session).

Each fixture starts its sender as a subprocess in its own process group on 127.0.0.1 (random
free port), waits for its READY line and yields a ``harness.Sender``; teardown stops exactly
that process group. Chromium runs inside a private network namespace; ``harness.receive_check``
joins it with nsenter. Missing tools skip locally and fail in CI (``tests.support.require``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.interop import harness
from tests.support import require, require_tool


@pytest.fixture(scope="session")
def interop_client() -> str:
    """Receiving client: the project's (``avatar_rtc``, default) or plain ``aiortc``."""
    return os.environ.get("INTEROP_CLIENT", "avatar_rtc")


@pytest.fixture(scope="session")
def gst_sender() -> Iterator[harness.Sender]:
    problem = harness.gstreamer_problem()
    require(problem is None, problem or "")
    with harness.gstreamer_sender() as sender:
        yield sender


@pytest.fixture(scope="session")
def chromium_sender() -> Iterator[harness.Sender]:
    chromium = require_tool("chromium")
    require_tool("unshare")
    require_tool("nsenter")
    require_tool("ip")
    problem = harness.netns_problem()
    require(problem is None, problem or "")
    with harness.chromium_sender(chromium) as sender:
        yield sender
