"""Four TURN URLs with UDP to the TURN server blocked (private network namespace).

The measurement runs in ``tests/rtc/netns_fallback.py`` under ``unshare -n`` (coturn,
nftables, sender and client all inside, on ``lo``); this test checks its verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require, require_tool

pytestmark = [pytest.mark.interop, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _can_unshare() -> bool:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def test_udp_blocked_four_urls_connect_via_tcp_or_tls() -> None:
    for tool in ("unshare", "nft", "ip", "turnserver", "openssl"):
        require_tool(tool)
    require(_can_unshare(), "unshare -n (root / CAP_SYS_ADMIN)")
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.rtc.netns_fallback", "--runs", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    four, tcp_first = result["four_urls"], result["tcp_first"]
    # Every run connected, through TCP or TLS (UDP is dropped).
    for config in ("four_urls", "tcp_first", "tcp_only"):
        assert set(result[config]["transports"]) <= {"tcp", "tls"}, result
    # Blocked UDP URLs first in the list cost at most the relay grace, not a timeout per URL.
    assert four["median"] <= tcp_first["median"] + 1.5, result
    print(json.dumps(result))
