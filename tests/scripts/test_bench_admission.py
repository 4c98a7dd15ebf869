"""scripts/bench_admission.py: admission with and without the workers' measured CPU."""

from __future__ import annotations

import json

import pytest

from tests.support import load_script, run_script

bench = load_script("bench_admission")


def result(fps: float | None, worst: float | None, ok: bool = True) -> dict[str, object]:
    return {"fps": fps, "worst_second_fps": worst, "ok": ok}


def test_a_run_counts_the_sessions_under_24_fps_and_the_failed_ones() -> None:
    results = [result(25.0, 24), result(23.0, 12), result(None, None, ok=False)]
    run = bench.summarise("costs", results, most_running=3, wall=40.0)
    assert run == {
        "mode": "costs",
        "sessions": 3,
        "failed": 1,
        "most_running": 3,
        "min_fps": 0.0,  # the failed one received nothing
        "median_fps": 23.0,
        "min_worst_second": 0.0,
        "under_24_fps": 2,
        "wall_s": 40.0,
    }


def test_each_figure_is_the_median_of_the_mode_runs() -> None:
    runs = [
        bench.summarise("measured", [result(fps, 20)], most_running=most, wall=wall)
        for fps, most, wall in ((24.0, 30, 70.0), (25.0, 38, 90.0), (24.5, 35, 80.0))
    ]
    row = bench.median_runs(runs)
    assert row["mode"] == "measured"
    assert (row["min_fps"], row["most_running"], row["wall_s"]) == (24.5, 35, 80.0)


@pytest.mark.parametrize(
    "args",
    [
        ("--runs", "0"),
        ("--cost", "0"),
        ("--limit", "1.5"),
        ("--modes", "other"),
        ("--duration", "2"),  # not longer than the warm-up
        ("--duration", "3"),  # no whole second counted: its worst second showed as 0 fps
    ],
)
def test_bad_arguments_are_refused(args: tuple[str, ...]) -> None:
    done = run_script("bench_admission", *args)
    assert done.returncode == 2 and "error:" in done.stderr


@pytest.mark.slow
def test_a_short_run_of_both_modes_prints_their_table_and_json() -> None:
    done = run_script(
        "bench_admission",
        *("--sessions", "2", "--gap", "0", "--duration", "4", "--json"),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {row["mode"]: row for row in figures["rows"]}
    assert set(rows) == {"measured", "costs"}
    for row in rows.values():
        assert row["sessions"] == 2 and row["failed"] == 0
        assert 1 <= row["most_running"] <= 2 and row["median_fps"] > 0
    assert "medians of 1 run(s)" in done.stdout
