"""The fleet report: P50/P95/P99 across sessions of what each session measured.

Metrics (:data:`METRICS`): time to first frame, say -> speech, lip-sync offset (QA) and
freezes per minute (QA); and the video each session received (:data:`VIDEO_METRICS`: frames a
second over the run and in its worst second, where the low end matters: ``min``).
Percentiles are NumPy's default (linear interpolation between the closest ranks) over the
sessions that measured the metric; ``n`` says how many did. The JSON (``to_dict()``) also
lists every session's result; :func:`plot_fleet` draws the distributions as a PNG (needs
matplotlib, the ``qa`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .jobs import JobResult

__all__ = [
    "METRICS",
    "PERCENTILES",
    "VIDEO_METRICS",
    "FleetReport",
    "MetricSummary",
    "aggregate",
    "plot_fleet",
]

SCHEMA_VERSION = 1
PERCENTILES = (50, 95, 99)
# JobResult field -> (label, unit)
METRICS: dict[str, tuple[str, str]] = {
    "ttff_s": ("time to first frame", "s"),
    "say_to_speech_s": ("say -> speech", "s"),
    "lipsync_offset_ms": ("lip-sync offset", "ms"),
    "freezes_per_minute": ("freezes per minute", "/min"),
}
VIDEO_METRICS: dict[str, tuple[str, str]] = {
    "fps": ("received video", "fps"),
    "worst_second_fps": ("worst second", "fps"),
}


@dataclass(frozen=True)
class MetricSummary:
    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    min: float | None
    max: float | None

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "n": self.n,
            **{f"p{p}": rounded(getattr(self, f"p{p}")) for p in PERCENTILES},
            "min": rounded(self.min),
            "max": rounded(self.max),
        }


def summarise(values: Sequence[float]) -> MetricSummary:
    if not values:
        return MetricSummary(0, None, None, None, None, None)
    p50, p95, p99 = (float(v) for v in np.percentile(np.asarray(values, float), PERCENTILES))
    return MetricSummary(len(values), p50, p95, p99, float(min(values)), float(max(values)))


@dataclass(frozen=True)
class FleetReport:
    sessions: int
    ok: int
    failed: int
    interrupted: int  # ended early: the engine was stopped
    not_run: int  # never started: the engine was stopped first (not failed)
    qa_pass: int
    qa_fail: int
    metrics: dict[str, MetricSummary]
    results: tuple[JobResult, ...]
    wall_seconds: float | None = None
    engine: str | None = None
    video: dict[str, MetricSummary] = field(default_factory=dict)  # VIDEO_METRICS

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "engine": self.engine,
            "sessions": self.sessions,
            "ok": self.ok,
            "failed": self.failed,
            "interrupted": self.interrupted,
            "not_run": self.not_run,
            "qa": {"pass": self.qa_pass, "fail": self.qa_fail},
            "wall_seconds": None if self.wall_seconds is None else round(self.wall_seconds, 3),
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "video": {name: m.to_dict() for name, m in self.video.items()},
            "results": [r.to_dict() for r in self.results],
        }


def aggregate(
    results: Sequence[JobResult], *, wall_seconds: float | None = None, engine: str | None = None
) -> FleetReport:
    ordered = tuple(sorted(results, key=lambda r: r.index))
    return FleetReport(
        sessions=len(ordered),
        ok=sum(r.ok for r in ordered),
        failed=sum(not r.ok and not r.not_run for r in ordered),
        interrupted=sum(r.interrupted for r in ordered),
        not_run=sum(r.not_run for r in ordered),
        qa_pass=sum(r.verdict == "pass" for r in ordered),
        qa_fail=sum(r.verdict == "fail" for r in ordered),
        metrics=_summaries(ordered, METRICS),
        results=ordered,
        wall_seconds=wall_seconds,
        engine=engine,
        video=_summaries(ordered, VIDEO_METRICS),
    )


def _summaries(results: Sequence[JobResult], names: Iterable[str]) -> dict[str, MetricSummary]:
    """Each ``JobResult`` field of ``names``, over the sessions that measured it."""
    return {
        name: summarise([v for r in results if (v := getattr(r, name)) is not None])
        for name in names
    }


def plot_fleet(report: FleetReport, path: str | os.PathLike[str]) -> None:
    """One panel per metric: each session's value (dots) and the P50/P95/P99 lines; then the
    video fps each session received, with its P50 and the lowest."""
    # Not pyplot's (nor its backend switch): a figure of our own, freed with its reference.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    percentiles = tuple((f"p{p}", f"P{p}") for p in PERCENTILES)  # (attribute, legend)
    panels = [
        (name, label, unit, report.metrics[name], percentiles)
        for name, (label, unit) in METRICS.items()
    ]
    fps = report.video.get("fps")
    if fps is not None and fps.n:  # the low end is what matters: P50 and the lowest
        label, unit = VIDEO_METRICS["fps"]
        panels.append(("fps", label, unit, fps, (("p50", "P50"), ("min", "lowest"))))
    fig = Figure(figsize=(8, 2.2 * len(panels)))
    axes = fig.subplots(len(panels), 1)
    for ax, (name, label, unit, summary, lines) in zip(axes, panels, strict=True):
        points = [(r.index, v) for r in report.results if (v := getattr(r, name)) is not None]
        ax.set_title(f"{label} ({unit}), {summary.n} of {report.sessions} sessions", fontsize=9)
        if not points:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.plot([i for i, _ in points], [v for _, v in points], "o", color="tab:blue")
        for (attribute, legend), style in zip(lines, ("-", "--", ":"), strict=False):
            value = getattr(summary, attribute)
            ax.axhline(value, color="tab:red", linestyle=style, linewidth=1, label=legend)
        ax.set_xlabel("session", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="best")  # not over a session's dot
    fig.suptitle(f"avatar-rtc fleet: {report.ok}/{report.sessions} sessions ok", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
