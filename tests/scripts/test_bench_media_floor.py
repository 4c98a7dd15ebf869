"""scripts/bench_media_floor.py: the media work of one session, measured on the fan-out loop."""

from __future__ import annotations

import json

from tests.support import run_script


def test_it_prints_the_floor_from_its_parts() -> None:
    done = run_script("bench_media_floor", "--runs", "1", "--json")
    assert done.returncode == 0, done.stderr
    summary, line = done.stdout.strip().splitlines()
    figures = json.loads(line)
    assert summary.startswith("100 frames, 200 Opus packets, medians of 1:")
    for key in ("decode_us_per_frame", "rgb24_us_per_frame", "opus_us_per_packet"):
        assert figures[key] > 0
    # 25 frames and 50 packets a second, in % of one core
    parts = (figures["decode_us_per_frame"] + figures["rgb24_us_per_frame"]) * 25
    parts += figures["opus_us_per_packet"] * 50
    assert abs(figures["floor_percent_per_session"] - parts / 10_000) < 1e-9
    assert f"{figures['floor_percent_per_session']:.2f} % of a core" in summary


def test_runs_below_one_are_refused() -> None:
    done = run_script("bench_media_floor", "--runs", "0")
    assert done.returncode == 2
    assert "--runs must be >= 1" in done.stderr
