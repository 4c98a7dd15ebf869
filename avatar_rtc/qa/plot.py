"""The report as a PNG timeline: frame rate, audio level, mouth opening, and what went wrong.

Three rows sharing the time axis (seconds from the first frame): new frames per second (and
decoded frames per second) with freezes, black runs and pauses marked; the audio level with
speech segments, silences and dropouts; the mouth opening. A headline gives the verdicts.
A live session adds each turn (a dashed line at its say, arrows to its first speech and its
first mouth opening, labelled with the latencies), a fourth row with the received bitrate and
the packets lost, NACKs and PLIs of each second, and a second headline line with the time to
first frame, the latency percentiles and the network totals. The headline's parts wrap onto
as many lines as the figure's width needs.
matplotlib (the ``qa`` extra): a ``Figure`` of our own, not pyplot's, which Agg draws on
saving: no display needed, and the caller's pyplot (its backend, its figures) is left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .report import QaReport
from .spans import Span
from .turns import Turn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["headline", "plot_report", "timeline_figure"]

FREEZE_COLOUR = "tab:red"
BLACK_COLOUR = "black"
PAUSE_COLOUR = "tab:purple"
SPEECH_COLOUR = "tab:green"
SILENCE_COLOUR = "0.85"
DROPOUT_COLOUR = "tab:red"
TURN_COLOUR = "tab:blue"
HEADLINE_CHARS = 110  # a headline line's most characters: what the 12-inch figure holds
SEPARATOR = "  |  "


def headline(report: QaReport, width: int = HEADLINE_CHARS) -> str:
    """The verdicts, in parts of at most ``width`` characters a line; a live session's
    start-up, turns and network on the lines after."""
    d = report.to_dict()
    parts = [f"QA {report.verdict.upper()}"]
    video, audio, sync = d["video"], d["audio"], d["lipsync"]
    if video is not None:
        parts.append(
            f"{video['fps'] or 0:.1f} fps, freezes {len(video['freezes'])}, "
            f"black {len(report.counted_black())}"  # as the check counts: not a black start
        )
    if audio is not None:
        lufs = audio["integrated_lufs"]
        parts.append(
            (f"{lufs:.1f} LUFS" if lufs is not None else "silent")
            + f", dropouts {len(audio['dropouts'])}"
        )
    if sync["offset_ms"] is not None:
        parts.append(
            f"lip sync {sync['offset_ms']:+.0f} ms ({sync['verdict']}, "
            f"conf {sync['confidence']:.2f})"
        )
    else:
        parts.append("lip sync unknown")
    lines = _wrap(parts, width)
    if report.live is not None:
        lines += _wrap(_live_parts(d), width)
    return "\n".join(lines)


def _wrap(parts: list[str], width: int) -> list[str]:
    """``parts`` joined by the separator, a new line where the next would pass ``width``."""
    lines = [parts[0]]
    for part in parts[1:]:
        joined = lines[-1] + SEPARATOR + part
        if len(joined) > width:
            lines.append(part)
        else:
            lines[-1] = joined
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _live_parts(d: dict[str, Any]) -> list[str]:
    turns, network = d["turns"], d["network"]
    parts = [f"TTFF {_seconds(d['start']['total'])} s"]
    if turns["count"]:
        speech, mouth = turns["speech_latency_s"], turns["mouth_latency_s"]
        parts.append(
            f"{turns['count']} turns, P50/P95 say\u2192speech {_seconds(speech['p50'])}/"
            f"{_seconds(speech['p95'])} s, say\u2192mouth {_seconds(mouth['p50'])}/"
            f"{_seconds(mouth['p95'])} s"
        )
    video, pair = network["video"], network["selected_pair"]
    if video is not None:
        parts.append(
            f"loss {video['loss_pct'] or 0:.1f} % ({video['residual_loss_pct'] or 0:.1f} % after "
            f"repair), NACKs {video['nacks']}, PLIs {video['plis']}, "
            f"jitter {video['jitter_ms']:.1f} ms"
        )
    if pair is not None:
        relay = f" (TURN/{network['turn_transport']})" if network["turn_transport"] else ""
        parts.append(f"{pair['local_type']}{relay}\u2192{pair['remote_type']}")
    return parts


def plot_report(report: QaReport, path: str | Path) -> None:
    """Write the timeline of ``report`` to ``path`` (PNG, SVG or PDF: by its suffix)."""
    fig = timeline_figure(report)
    fig.savefig(str(path), dpi=100)


def timeline_figure(report: QaReport) -> Figure:
    """The timeline of ``report`` as a matplotlib figure (12 inches wide), to show or save."""
    # Not pyplot's: a figure pyplot does not track is freed with its last reference.
    from matplotlib.figure import Figure

    live = report.live is not None
    rows, height = (4, 9) if live else (3, 7)
    fig = Figure(figsize=(12, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True)
    fig.suptitle(headline(report), fontsize=10 if live else 11, fontweight="bold")
    _video_row(axes[0], report)
    _audio_row(axes[1], report)
    _mouth_row(axes[2], report)
    if live:
        _network_row(axes[3], report)
        _turn_marks(axes, report)
    axes[-1].set_xlabel("seconds from the first frame")
    end = max(report.duration, 1.0)
    axes[-1].set_xlim(0.0, end)
    return fig


def _mark(ax: Any, spans: list[Span], origin: float, colour: str, label: str) -> None:
    for i, span in enumerate(spans):
        ax.axvspan(
            span.start - origin,
            span.end - origin,
            color=colour,
            alpha=0.35,
            label=label if i == 0 else None,
            lw=0,
        )


def _per_second(
    times: list[float], origin: float, end: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(bin centres, events per second) in 1 s bins; the last bin as long as what is left."""
    edges = np.append(np.arange(0.0, end, 1.0), end)
    counts, _ = np.histogram(np.asarray(times) - origin, bins=edges)
    widths = np.maximum(np.diff(edges), 1e-9)
    return (edges[:-1] + edges[1:]) / 2.0, counts / widths


def _video_row(ax: Any, report: QaReport) -> None:
    ax.set_ylabel("frames / s")
    v = report.video
    if v is None:
        ax.text(0.5, 0.5, "no video", transform=ax.transAxes, ha="center")
        return
    end = max(report.duration, 1.0)
    x, new = _per_second(v.new_frame_times, report.origin, end)
    ax.step(x, new, where="mid", label="new frames / s", color="tab:blue")
    if v.fps:
        ax.axhline(v.fps, color="0.4", ls=":", lw=1, label=f"decoded {v.fps:.1f} fps")
    _mark(ax, list(v.freezes), report.origin, FREEZE_COLOUR, "freeze")
    _mark(ax, v.black, report.origin, BLACK_COLOUR, "black")
    _mark(ax, v.pauses, report.origin, PAUSE_COLOUR, "pause")
    ax.set_ylim(0.0, max(float(new.max(initial=0.0)), v.fps or 0.0, 1.0) * 1.25)
    ax.legend(loc="lower right", fontsize=8, ncols=5)


def _audio_row(ax: Any, report: QaReport) -> None:
    ax.set_ylabel("level dBFS")
    a = report.audio
    if a is None or a.first_time is None:
        ax.text(0.5, 0.5, "no audio", transform=ax.transAxes, ha="center")
        return
    levels = np.maximum(a.levels_db, -80.0)
    times = a.first_time - report.origin + (np.arange(len(levels)) + 0.5) * a.hop
    ax.plot(times, levels, color="tab:orange", lw=0.7, label="level (10 ms)")
    _mark(ax, a.silences, report.origin, SILENCE_COLOUR, "silence")
    _mark(ax, a.speech, report.origin, SPEECH_COLOUR, "speech")
    _mark(ax, a.dropouts, report.origin, DROPOUT_COLOUR, "dropout")
    ax.set_ylim(-80.0, 0.0)
    ax.legend(loc="lower right", fontsize=8, ncols=4)


def _mouth_row(ax: Any, report: QaReport) -> None:
    ax.set_ylabel("mouth opening")
    s = report.lipsync
    if s is None or len(s.mouth_times) == 0:
        ax.text(0.5, 0.5, "mouth not measured", transform=ax.transAxes, ha="center")
        return
    opening = s.mouth_openness
    low, high = np.percentile(opening, [2, 98])
    scaled = np.clip((opening - low) / (high - low), 0.0, 1.0) if high > low else opening * 0
    ax.plot(s.mouth_times - report.origin, scaled, color="tab:brown", lw=0.8, label="opening")
    if report.audio is not None:
        _mark(ax, report.audio.speech, report.origin, SPEECH_COLOUR, "speech")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="lower right", fontsize=8, ncols=2)


def _network_row(ax: Any, report: QaReport) -> None:
    ax.set_ylabel("kbit / s")
    timeline = report.live.network.to_dict(report.origin)["timeline"] if report.live else []
    if not timeline:
        ax.text(0.5, 0.5, "no network samples", transform=ax.transAxes, ha="center")
        return
    times = [p["t_s"] for p in timeline]
    for kind, colour in (("video", "tab:blue"), ("audio", "tab:orange")):
        kbps = [p[kind]["kbps"] or 0.0 for p in timeline]
        ax.step(times, kbps, where="pre", color=colour, label=f"{kind} kbit/s")
    # Per second: what got worse, as ticks at the top (lost packets, NACKs, PLIs).
    top = ax.get_ylim()[1]
    for key, marker, colour in (("lost", "v", "tab:red"), ("nacks", "x", "tab:purple")):
        _events(ax, timeline, key, top, marker, colour)
    _events(ax, timeline, "plis", top * 0.9, "d", "tab:brown")
    ax.set_ylim(0.0, top * 1.1)
    ax.legend(loc="lower right", fontsize=8, ncols=5)


def _events(
    ax: Any, timeline: list[dict[str, Any]], key: str, y: float, marker: str, c: str
) -> None:
    """Mark each second in which ``key`` (a cumulative count, video + audio) went up."""
    before = 0
    xs = []
    for point in timeline:
        count = point["video"][key] + point["audio"][key]
        if count > before:
            xs.append(point["t_s"])
        before = count
    ax.scatter(xs, [y] * len(xs), marker=marker, color=c, label=key if xs else None, zorder=3)


def _turn_marks(axes: Any, report: QaReport) -> None:
    """A dashed line at each say; arrows to its first speech (audio row) and mouth (mouth row)."""
    for i, turn in enumerate(report.turns(), 1):
        say = turn.say.issued - report.origin
        for ax in axes:
            ax.axvline(say, color=TURN_COLOUR, ls="--", lw=1)
        axes[0].annotate(
            f"T{i}",
            (say, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -12),
            textcoords="offset points",
            color=TURN_COLOUR,
            fontsize=9,
            fontweight="bold",
        )
        _latency(axes[1], turn, turn.speech_start, report.origin, "speech")
        _latency(axes[2], turn, turn.mouth_open, report.origin, "mouth")


def _latency(ax: Any, turn: Turn, reached: float | None, origin: float, what: str) -> None:
    say = turn.say.issued - origin
    if reached is None:
        ax.annotate(
            f"no {what}",
            (say, 0.9),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            color="tab:red",
            fontsize=8,
        )
        return
    end = reached - origin
    ax.annotate(
        "",
        (end, 0.9),
        (say, 0.9),
        xycoords=("data", "axes fraction"),
        arrowprops={"arrowstyle": "->", "color": TURN_COLOUR},
    )
    ax.annotate(
        f"{what} +{reached - turn.say.issued:.2f} s",
        (end, 0.9),
        xycoords=("data", "axes fraction"),
        xytext=(3, 3),
        textcoords="offset points",
        color=TURN_COLOUR,
        fontsize=8,
    )
