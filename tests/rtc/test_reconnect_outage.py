"""A 10 s network outage, a TURN server restart and a killed sender, end to end (private
network namespace).

The scenario runs in ``tests/rtc/outage_scenario.py`` under ``unshare -n`` (emulator, client,
coturn and nftables all inside, on ``lo``); these tests check its verdict and the file:

- media is back on the same stream iterator soon after the restore: within 3 s, plus twice the
  same run's initial connect time (a busy machine slows a reconnect as much as a connect);
- the same recording kept growing: FFmpeg decodes it end to end without an error, and the
  video timestamps show the gap and never go backwards. The gap is the outage, less what came
  back of its end: after the network returns the receiver NACKs the outage's tail, and what
  the sender's retransmission history still holds from a keyframe on is played and recorded
  (the emulator keeps 128 packets: under ``RECOVERABLE`` seconds);
- a killed sender (its port refuses connections) ends the session with a typed error within
  the watchdog's timeout + the policy's quick refused retries (under 5 s after the kill).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc.rtc.reconnect import ReconnectPolicy
from tests.record.filecheck import decodes_cleanly
from tests.rtc.outage_scenario import packet_times
from tests.support import require, require_tool

pytestmark = [pytest.mark.interop, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE = 10.0
BACK_WITHIN = 3.0  # the acceptance bound, from the restore to the first frame
# Seconds of an outage's end the emulator's 128-packet history can give back (~80 packets a
# second here: 1.6 s measured).
RECOVERABLE = 4.0


def _can_unshare() -> bool:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def _scenario(case: str, out: Path, *extra: str) -> dict[str, Any]:
    for tool in ("unshare", "nft", "ip", "ffprobe", "ffmpeg"):
        require_tool(tool)
    if case in ("turn", "sender_killed"):
        require_tool("turnserver")
        require_tool("openssl")
    require(_can_unshare(), "unshare -n (root / CAP_SYS_ADMIN)")
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.rtc.outage_scenario", case, str(out),
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["log"] = [
        line for line in proc.stderr.splitlines() if "avatar_rtc.rtc.reconnect" in line
    ]
    return result


def _check(
    result: dict[str, Any], out: Path, *, replaced: bool, ice_restarted: bool = False
) -> None:
    summary = {k: v for k, v in result.items() if k != "pts"}
    print(json.dumps(summary))
    # Media back, on the same iterator, within the bound.
    back = result["first_frame_after"]
    assert back is not None, summary
    assert back < BACK_WITHIN + 2 * result["connect_seconds"], summary
    assert result["frames_before"] > 10 and result["frames_after"] > 10, summary
    assert not result["iterator_ended"] and result["state"] == "connected", summary
    names = [e["name"] for e in result["events"]]
    assert names == ["reconnecting", "reconnected"], summary
    outage = result["events"][1]["outage"]
    assert outage["replaced"] is replaced, summary
    assert outage["ice_restarted"] is ice_restarted, summary
    assert result["reconnect"]["ice_restarts"] == int(ice_restarted), summary
    assert outage["seconds"] >= OUTAGE - 0.5, summary
    stats = result["reconnect"]
    assert stats["outages"] == stats["reconnects"] == 1 and not stats["reconnecting"], summary
    assert stats["outage_seconds"] == pytest.approx(outage["seconds"]), summary
    # The stream's timestamps: strictly increasing, the gap visible.
    pts = result["pts"]
    steps = [b - a for a, b in itertools.pairwise(pts)]
    assert min(steps) > 0 and max(steps) >= OUTAGE - 0.5 - RECOVERABLE, summary
    # The same file, playable end to end, the gap in its video timestamps.
    assert result["recorder"]["error"] is None, summary
    assert decodes_cleanly(out) == ""
    times = packet_times(out, "v")
    assert len(times) >= result["recorder"]["video_frames"] > 20
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0 and max(gaps) >= OUTAGE - 0.5 - RECOVERABLE, (max(gaps), summary)


def test_network_outage_media_back_on_the_same_connection(tmp_path: Path) -> None:
    """Everything dropped for 10 s: nothing is torn down while the network is down, and the
    old path carries media again as soon as it is back (no new connection needed)."""
    out = tmp_path / "outage.mp4"
    _check(_scenario("network", out, "--outage", str(OUTAGE)), out, replaced=False)


def test_turn_restart_media_back_on_a_new_connection(tmp_path: Path) -> None:
    """coturn stopped 10 s and restarted (allocations gone): once it answers again, a new peer
    connection through it replaces the old one; the stream and the file carry on."""
    out = tmp_path / "turn.mp4"
    result = _scenario("turn", out, "--outage", str(OUTAGE))
    _check(result, out, replaced=True)
    assert result["reconnect"]["attempts"] >= 1
    assert result["pair_after"].startswith("relay") and result["pair_after"] != result["pair"]


def test_turn_restart_media_back_by_an_ice_restart(tmp_path: Path) -> None:
    """The same, with a WHEP server that takes PATCH: an ICE restart (new credentials, a new
    allocation on the restarted coturn) brings media back on the same peer connection: no new
    POST, the same DTLS session and SSRCs; the stream and the file carry on."""
    out = tmp_path / "turn.mp4"
    result = _scenario("turn", out, "--outage", str(OUTAGE), "--ice-restart")
    _check(result, out, replaced=False, ice_restarted=True)
    assert result["reconnect"]["attempts"] == 1, result["log"]
    assert result["pair_after"].startswith("relay") and result["pair_after"] != result["pair"]
    assert any("ICE restarted" in line for line in result["log"]), result["log"]


def test_sender_killed_is_a_typed_error_within_5s(tmp_path: Path) -> None:
    """The emulator process SIGKILLed while we receive through coturn (relay only): its port
    refuses connections, the network works, so the loss is final once the watchdog fired and
    ``refused_attempts`` quick POSTs were refused: ServiceUnreachableError (a MediaLostError).

    Bound: the watchdog's timeout + the refused retries' slots (jitter at its top) + 1 s for
    the POSTs, probes and polling ticks (~4.1 s with the defaults, the issue asks < 5 s); on a
    machine slow enough that this run's own connect took longer than 1 s, that connect time
    replaces the 1 s (a busy machine slows the retries as much as a connect)."""
    out = tmp_path / "killed.mp4"
    result = _scenario("sender_killed", out)
    summary = {k: v for k, v in result.items() if k != "log"}
    print(json.dumps(summary))
    events = {e["name"]: e["t"] for e in result["events"]}
    assert list(events) == ["reconnecting", "disconnected", "error"], summary
    policy = ReconnectPolicy()
    bound = (
        result["media_timeout"]
        + policy.refused_attempts * policy.initial_delay * (1 + policy.jitter)
        + max(1.0, result["connect_seconds"])
    )
    print(f"kill -> watchdog {events['reconnecting']:.2f} s, -> typed error "
          f"{events['error']:.2f} s (bound {bound:.2f} s)")  # fmt: skip
    assert events["reconnecting"] >= result["media_timeout"] - 0.1, summary
    assert events["error"] < bound, summary
    types = result["error_types"]
    assert types[:2] == ["ServiceUnreachableError", "MediaLostError"], summary
    assert "AvatarRTCError" in types
    message = result["events"][-1]["data"]
    assert "WHEP server http://127.0.0.1:8080 refuses connections" in message, summary
    reconnect = result["reconnect"]
    assert reconnect["attempts"] == policy.refused_attempts and reconnect["reconnects"] == 0
    # The stream ends with the error (its iterator raises it); the recording so far is a
    # whole file.
    assert result["state"] == "disconnected" and result["stream_ended"] is not None, summary
    assert "ServiceUnreachableError" in result["stream_error"], summary
    assert result["stream_ended"] < bound + 0.5, summary
    assert result["recorder"]["error"] is None and result["recorder"]["video_frames"] > 20
    assert decodes_cleanly(out) == ""


def test_udp_blocked_mid_session_media_back_over_turn_tcp(tmp_path: Path) -> None:
    """UDP to and from the TURN server dropped for good while media flows over TURN/UDP (a
    firewall closing UDP; TCP still works). The UDP TURN server's silence used to read as
    "the network is down": no attempt in 45 s, then MediaLostError. The WHEP server answering
    over TCP tells otherwise: a new connection goes over TURN/TCP or TLS (the service's four
    URLs), on the same stream and file.

    Bound: the watchdog's timeout, one attempt (its POST, gathering, ICE and DTLS: twice the
    same run's first connect, which did the same), and 3 s for the probes, the DELETE and a
    loaded machine. Measured here: 3.4 s (the old connection's close was waited for too: 8.4)."""
    for tool in ("turnserver", "openssl"):
        require_tool(tool)
    out = tmp_path / "udp_blocked.mp4"
    result = _scenario("udp_blocked", out)
    summary = {k: v for k, v in result.items() if k != "pts"}
    print(json.dumps(summary))
    assert result["transport_before"] == "udp", summary
    assert result["transport_after"] in ("tcp", "tls"), summary
    back = result["first_frame_after"]
    bound = ReconnectPolicy().media_timeout + 2 * result["connect_seconds"] + 3.0
    assert back is not None and back < bound, summary
    assert [e["name"] for e in result["events"]] == ["reconnecting", "reconnected"], summary
    assert result["reconnect"]["attempts"] == 1 and result["state"] == "connected", summary
    assert result["frames_after"] > 10 and not result["iterator_ended"], summary
    assert result["recorder"]["error"] is None, summary
    assert decodes_cleanly(out) == ""
    times = packet_times(out, "v")
    assert len(times) >= result["recorder"]["video_frames"] > 20
    assert min(b - a for a, b in itertools.pairwise(times)) > 0
