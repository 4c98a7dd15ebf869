"""Thresholds: the defaults of the standards, overridden section by section from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.qa.lipsync import SyncBands
from avatar_rtc.qa.thresholds import Thresholds, load_thresholds


def test_defaults() -> None:
    t = Thresholds()
    assert (t.max_freezes, t.max_pauses, t.max_black, t.max_dropouts) == (0, 0, 0, 0)
    assert t.lipsync == SyncBands(45.0, 125.0, 90.0, 185.0, 0.4)
    assert (t.max_ttff_s, t.max_say_to_speech_s) == (3.0, 2.5)
    assert t.min_integrated_lufs is None and t.min_fps is None


def test_toml_overrides_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        "[video]\nmax_freezes = 2\nmin_fps = 20\n"
        "[audio]\nmax_true_peak_dbtp = -1.0\n"
        "[lipsync]\nwarn_lag_ms = 200\nmin_confidence = 0.5\n"
    )
    t = load_thresholds(path)
    assert t.max_freezes == 2 and t.min_fps == 20.0 and t.max_true_peak_dbtp == -1.0
    assert t.lipsync.warn_lag_ms == 200.0 and t.lipsync.min_confidence == 0.5
    assert t.lipsync.pass_lead_ms == 45.0 and t.max_black == 0  # the rest: defaults


@pytest.mark.parametrize(
    "text",
    [
        "[video]\nmax_freezs = 1\n",  # typo
        "[vidoe]\nmax_freezes = 1\n",
        "[video]\nmax_freezes = -1\n",
        "[video]\nmax_freezes = 1.5\n",
        "[audio]\nmin_integrated_lufs = 'loud'\n",
        "[lipsync]\nmin_confidence = true\n",
        "[video]\nmin_fps = nan\n",  # every run failed, against ">= nan"
        "[audio]\nmax_true_peak_dbtp = inf\n",
        "[lipsync]\nmin_confidence = 2\n",  # lip sync never known: it could never fail
        "[lipsync]\npass_lead_ms = 200\nwarn_lead_ms = 90\n",  # the bands out of order
        "[lipsync]\nwarn_lag_ms = -10\n",
        "[live]\nmax_ttff_s = -1\n",  # a check that can never pass
        "max_freezes = 1\n",  # outside a section
        "[video\n",  # not TOML
    ],
)
def test_bad_files_are_usage_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError):
        load_thresholds(path)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_thresholds(tmp_path / "absent.toml")
