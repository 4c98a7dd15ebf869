"""scripts/bench_face.py: the face's CPU per frame, open eyes shared vs drawn each frame."""

from __future__ import annotations

import json

from tests.support import run_script


def test_it_prints_both_figures_and_their_ratio() -> None:
    done = run_script("bench_face", "--runs", "1", "--seconds", "2", "--json")
    assert done.returncode == 0, done.stderr
    summary, line = done.stdout.strip().splitlines()
    figures = json.loads(line)
    assert figures["frames"] == 50 and summary.startswith("50 idle 512x512 frames, medians of 1:")
    assert figures["drawn_us_per_frame"] > 0 and figures["shared_us_per_frame"] > 0
    assert figures["fill_ms"] > 0
    ratio = figures["shared_us_per_frame"] / figures["drawn_us_per_frame"]
    assert abs(figures["ratio"] - ratio) < 1e-9  # one run: the median is that run's
    assert f"({figures['ratio']:.2f} of it;" in summary


def test_bad_arguments_are_refused() -> None:
    done = run_script("bench_face", "--runs", "0")
    assert done.returncode == 2 and "--runs must be >= 1" in done.stderr
