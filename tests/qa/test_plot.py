"""The PNG timeline is written, and its headline states the verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_rtc.qa import LiveResult, MediaQa, Say
from avatar_rtc.qa.network import NetworkResult, NetworkSample, TrackSample
from avatar_rtc.qa.plot import HEADLINE_CHARS, SEPARATOR, headline, plot_report, timeline_figure
from avatar_rtc.qa.report import QaReport
from avatar_rtc.rtc.candidate_pair import SelectedPair
from tests.rtc.test_receive_stats import receive_stats

from .conftest import Analysed
from .media import Faults
from .test_live_turns import fed


@pytest.mark.slow
def test_timeline_png_of_a_file_with_a_dropout(analysed: Analysed, tmp_path: Path) -> None:
    report = analysed("photo_dropout.mkv", face="photo", faults=Faults(dropout=(4.0, 0.6)))
    out = tmp_path / "timeline.png"
    plot_report(report, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 700)
    text = headline(report)
    assert text.startswith("QA FAIL")
    assert "dropouts 1" in text and "freezes 0" in text and "lip sync" in text


def _long_live_report() -> QaReport:
    """4 s of fed media, and a live part with every headline item at its longest: two turns,
    loss with decimals, a relayed pair through TURN over TLS."""
    qa = fed(speech_at=0.0)
    start = TrackSample(receive_stats(), jitter=0.0)
    video = TrackSample(
        receive_stats(packets=9_870, bytes=5_000_000, lost=1_234, recovered_packets=1_111,
                      nacks_sent=123, plis_sent=12),
        jitter=0.0123,
    )  # fmt: skip
    audio = TrackSample(receive_stats(packets=5_000, bytes=400_000), jitter=0.001)
    pair = SelectedPair(
        "relay", ("10.0.0.1", 50000), "host", ("10.0.0.2", 3478),
        relay_url="turns:turn.example.com:443?transport=tcp", relay_transport="tls",
    )  # fmt: skip
    network = NetworkResult(
        [NetworkSample(0.0, start, start), NetworkSample(4.0, video, audio)], pair
    )
    says = [Say("t1", "Hello there.", 0.5, 0.51), Say("t2", "Goodbye.", 2.0, 2.01)]
    live = LiveResult("s1", {"total": 12.345}, says, network)
    return qa.report(live=live)


def test_every_headline_line_fits_the_figure() -> None:
    report = _long_live_report()
    text = headline(report)
    assert "relay (TURN/tls)\u2192host" in text and "2 turns" in text and "NACKs 123" in text
    # the old single-line-per-part-group layout ran wider than the figure
    assert len(text.split("\n")) >= 3
    assert all(len(line) <= HEADLINE_CHARS for line in text.split("\n"))
    fig = timeline_figure(report)
    fig.draw_without_rendering()  # lays it out (constrained) and sizes the text
    [title] = [t for t in fig.texts if t.get_text() == text]
    box = title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert box.y1 <= fig.bbox.height
    # the rows start below it
    rows = [ax.get_tightbbox() for ax in fig.axes]
    assert all(row is not None and row.y1 <= box.y0 + 1 for row in rows)


def test_a_line_that_would_pass_the_width_is_split_at_a_separator() -> None:
    report = _long_live_report()
    unwrapped = headline(report, width=10_000).split("\n")
    assert len(unwrapped) == 2  # the verdicts; the live part
    lines = headline(report, width=40).split("\n")
    assert len(lines) > 4
    # split only between parts: nothing lost, nothing cut, the live part on a line of its own
    assert SEPARATOR.join(lines) == SEPARATOR.join(unwrapped)
    assert any(line.startswith("TTFF 12.35 s") for line in lines)
    # a line passes the width only when it is one part alone
    assert all(len(line) <= 40 or SEPARATOR not in line for line in lines)


def test_plotting_leaves_the_callers_matplotlib_as_it_was(tmp_path: Path) -> None:
    import matplotlib
    from matplotlib import pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # the caller's choice, not Agg
    try:
        plot_report(_long_live_report(), tmp_path / "t.png")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []  # no figure left open in pyplot's registry
        assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)


def test_the_headline_counts_black_as_the_check_does_not_a_black_start() -> None:
    qa = MediaQa(lipsync=False)
    for i in range(4 * 25):  # black for the first 0.6 s (a player's start), then a picture
        frame = np.full((48, 64), 0 if i < 15 else 100, dtype=np.uint8)
        if i >= 15:
            frame[10:20, i % 50 : i % 50 + 10] = 220
        qa.feed_video(frame, i / 25)
    report = qa.report()
    assert report.video is not None and len(report.video.black) == 1  # reported...
    assert report.counted_black() == [] and report.verdict == "pass"  # ...not counted
    assert "black 0" in headline(report)  # was "QA PASS | ... black 1"
