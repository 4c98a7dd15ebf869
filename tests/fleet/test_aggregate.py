"""The aggregated report: percentiles across sessions, counts, JSON and PNG."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from avatar_rtc.fleet.aggregate import aggregate, plot_fleet
from avatar_rtc.fleet.jobs import JobResult


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks, written out (independent of NumPy)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def results() -> list[JobResult]:
    ttff = [0.31, 0.12, 0.55, 0.2, 0.9, 0.4, 0.25, 0.33]
    out = []
    for index, value in enumerate(ttff):
        out.append(
            JobResult(
                index,
                "qa",
                ok=index != 5,
                error=None if index != 5 else "boom",
                ttff_s=value,
                say_to_speech_s=None if index % 2 else 0.1 * index,
                lipsync_offset_ms=float(index * 7 - 20),
                freezes_per_minute=0.0 if index < 6 else 10.0,
                verdict="pass" if index < 6 else "fail",
            )
        )
    return list(reversed(out))  # arrival order is not index order


def test_percentiles_are_over_the_sessions_that_measured_each_metric() -> None:
    rs = results()
    report = aggregate(rs, wall_seconds=12.5, engine="local")
    for name in ("ttff_s", "say_to_speech_s", "lipsync_offset_ms", "freezes_per_minute"):
        values = [v for r in rs if (v := getattr(r, name)) is not None]
        summary = report.metrics[name]
        assert summary.n == len(values)
        for p in (50, 95, 99):
            assert getattr(summary, f"p{p}") == pytest.approx(percentile(values, p))
    assert report.metrics["say_to_speech_s"].n == 4


def test_counts_order_and_json() -> None:
    report = aggregate(results(), engine="ray")
    assert (report.sessions, report.ok, report.failed) == (8, 7, 1)
    assert (report.qa_pass, report.qa_fail) == (6, 2)
    assert [r.index for r in report.results] == list(range(8))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["engine"] == "ray"
    ttff = [r.ttff_s for r in results() if r.ttff_s is not None]
    assert data["metrics"]["ttff_s"]["p50"] == pytest.approx(percentile(ttff, 50), abs=1e-4)
    assert JobResult.from_dict(data["results"][5]).error == "boom"


def test_a_metric_nobody_measured_is_null() -> None:
    report = aggregate([JobResult(0, "copy-record", ok=True, ttff_s=0.2)])
    assert report.to_dict()["metrics"]["lipsync_offset_ms"] == {
        "n": 0,
        "p50": None,
        "p95": None,
        "p99": None,
        "min": None,
        "max": None,
    }


def test_plot_writes_a_png(tmp_path: Path) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # the caller's choice: plotting leaves it alone
    try:
        plot_fleet(aggregate(results()), tmp_path / "first.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    out = tmp_path / "fleet.png"
    plot_fleet(aggregate(results()), out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # 2.2 inches at 100 dpi a panel: the four metrics; sessions with frame figures add the
    # received video's panel
    assert int.from_bytes(data[20:24], "big") == 4 * 220
    with_video = [replace(r, fps=24.0 + r.index / 10) for r in results()]
    plot_fleet(aggregate(with_video), out)
    assert int.from_bytes(out.read_bytes()[20:24], "big") == 5 * 220


def test_the_video_received_is_summarised_with_its_low_end() -> None:
    fps = [25.0, 24.8, None, 13.6]  # a session that failed before its first frame: None
    rs = [JobResult(i, "decode", ok=v is not None, fps=v, worst_second_fps=v and v - 5)
          for i, v in enumerate(fps)]  # fmt: skip
    report = aggregate(rs)
    assert set(report.video) == {"fps", "worst_second_fps"}
    measured = [v for v in fps if v is not None]
    summary = report.video["fps"]
    assert (summary.n, summary.min, summary.max) == (3, 13.6, 25.0)
    assert summary.p50 == pytest.approx(percentile(measured, 50))
    assert report.video["worst_second_fps"].min == pytest.approx(8.6)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["video"]["fps"]["min"] == 13.6 and data["video"]["worst_second_fps"]["n"] == 3
