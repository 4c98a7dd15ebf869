"""scripts/bench_face.py: the face's CPU per frame, open eyes shared vs drawn each frame."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import SCRIPTS


def test_it_prints_both_figures_and_their_ratio() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_face.py"), "--runs", "1", "--seconds", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_face.py"), "--runs", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--runs must be >= 1" in done.stderr
