"""The PNG timeline is written, and its headline states the verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_rtc.qa.plot import headline, plot_report

from .conftest import Analysed
from .media import Faults

pytestmark = pytest.mark.slow


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
