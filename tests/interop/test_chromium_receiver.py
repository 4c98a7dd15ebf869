"""Headless Chromium as a WHEP receiver of the emulator, relay only through coturn.

The scenario (``peers/chromium_receiver/scenario.py``) runs in a private network namespace
(``unshare -n``, only ``lo``): coturn + an emulator session that speaks, one
:meth:`ChromiumReceiver.watch` that the scenario stops 6 s after its first decoded frame. It
prints the watch as JSON; its stderr holds everything the peer logged (and Chromium's own
stderr).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from avatar_rtc.emulator.media.options import AvatarMediaOptions
from tests.interop.harness import ROOT, netns_problem
from tests.interop.peers.chromium_receiver.receiver import ChromiumWatch, StatsSample
from tests.support import require, require_tool

WATCH_SECONDS = 4.0
AFTER_FIRST_SECONDS = 6.0  # the watch stops then (WATCH_SECONDS + 30 at most)
MIN_FPS = 15.0  # the emulator sends 25 fps; a busy machine decodes fewer


@dataclass
class Run:
    result: dict[str, Any]
    output: str  # stdout + stderr of the scenario, Chromium's stderr included
    secrets: list[str]


@pytest.fixture(scope="module")
def chromium_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    chromium = require_tool("chromium")
    for tool in ("unshare", "ip", "turnserver", "openssl"):
        require_tool(tool)
    problem = netns_problem()
    require(problem is None, problem or "")
    workdir = tmp_path_factory.mktemp("chromium-receiver")
    secrets_file = workdir / "secrets.json"
    cmd = ["unshare", "-n", sys.executable, "-m", "tests.interop.peers.chromium_receiver.scenario",
           str(workdir / "run"), "--chromium", chromium, "--seconds", str(WATCH_SECONDS),
           "--after-first", str(AFTER_FIRST_SECONDS),
           "--secrets-out", str(secrets_file)]  # fmt: skip
    env = {**os.environ, "CHROMIUM_LOG": "1"}  # Chromium's stderr too, for the secrets check
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    yield Run(json.loads(done.stdout.strip().splitlines()[-1]), output,
              json.loads(secrets_file.read_text()))  # fmt: skip


@pytest.mark.interop
def test_chromium_decodes_the_emulator_stream_through_the_relay(chromium_run: Run) -> None:
    result = chromium_run.result
    assert result["error"] is None, result["error"]
    assert result["relay"] and result["candidate_type"] == "relay", result["candidate_type"]
    assert result["whep_delete_status"] in (200, 204)
    samples = [StatsSample(**s) for s in result["samples"]]
    assert len(samples) >= WATCH_SECONDS / 0.25 - 2, len(samples)
    walls = [s.wall for s in samples]
    assert walls == sorted(walls) and len(set(walls)) == len(walls), walls
    decoded = [s.frames_decoded for s in samples]
    assert decoded == sorted(decoded), decoded  # counters only grow
    last = samples[-1]
    assert last.packets_received > 0 and last.audio_packets_received > 0, last
    assert isinstance(last.freeze_count, int) and last.freeze_count >= 0
    # The frames shown (requestVideoFrameCallback), each with its latency from its last packet
    shown = [frame for s in samples for frame in s.shown]
    latencies = [latency for _, latency in shown if latency is not None]
    assert len(shown) >= last.frames_decoded / 2, (len(shown), last.frames_decoded)
    assert [wall for wall, _ in shown] == sorted(wall for wall, _ in shown)
    assert walls[0] - 30 < shown[0][0] <= walls[-1]  # the same (wall) clock as the samples
    assert len(latencies) >= len(shown) / 2 and all(0 <= x < 5 for x in latencies), latencies
    fps = ChromiumWatch(samples).fps()
    emulator_fps = AvatarMediaOptions().fps
    startup, took = result["startup_seconds"], result["watch_seconds"]
    print(f"chromium receiver: {fps:.1f} fps (emulator {emulator_fps}), startup {startup:.2f} s, "
          f"watch of {WATCH_SECONDS} s took {took:.2f} s, {len(shown)} frames shown, latency "
          f"median {1000 * statistics.median(latencies):.1f} ms")  # fmt: skip
    # Not more than sent (a wrong counter or clock), not much less (frames really decoded).
    assert MIN_FPS <= fps <= emulator_fps * 1.2, decoded


@pytest.mark.interop
def test_the_watch_ends_when_the_caller_says(chromium_run: Run) -> None:
    # The impairment cells rely on it: they stop Chromium once it and we have a full window,
    # however late either first frame came. Without the stop it runs 30 s longer.
    samples = [StatsSample(**s) for s in chromium_run.result["samples"]]
    first = next(s.wall for s in samples if s.frames_decoded > 0)
    watched_after_first = samples[-1].wall - first
    assert watched_after_first >= AFTER_FIRST_SECONDS - 0.25, watched_after_first
    assert watched_after_first <= AFTER_FIRST_SECONDS + 0.5, watched_after_first  # then it stops


@pytest.mark.interop
def test_the_peer_prints_no_bearer_or_turn_credential(chromium_run: Run) -> None:
    token, username, credential, auth_secret = chromium_run.secrets
    real = len(token) > 20 and len(credential) > 10  # not empty strings (no value in messages)
    assert real, "the scenario wrote no real secrets"
    # Something was logged at all (the page's lines come through the control server).
    assert "page: receiver page up" in chromium_run.output
    named = {"bearer": token, "TURN username": username, "TURN credential": credential,
             "TURN auth secret": auth_secret}  # fmt: skip
    # Names only: a failure message must not print the secret either.
    leaked = [name for name, secret in named.items() if secret in chromium_run.output]
    assert not leaked, leaked


def test_stats_sample_from_the_page_types_and_defaults() -> None:
    sample = StatsSample.from_page({"wall": 12.5, "frames_decoded": 7, "freeze_count": None,
                                    "total_freezes_duration": 1})  # fmt: skip
    assert sample.frames_decoded == 7 and sample.packets_received == 0
    assert isinstance(sample.freeze_count, int) and sample.freeze_count == 0
    assert isinstance(sample.total_freezes_duration, float)
    watch = ChromiumWatch([StatsSample(wall=0.0), StatsSample(wall=1.0, frames_decoded=5),
                           StatsSample(wall=3.0, frames_decoded=55)])  # fmt: skip
    assert watch.fps() == 25.0  # from the first sample with a decoded frame
    assert not watch.relay
