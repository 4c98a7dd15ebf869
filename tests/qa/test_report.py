"""The report's JSON (schema 1) and its verdict against thresholds, from analysers fed directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avatar_rtc.qa import MediaQa, Thresholds

RATE = 48_000
FPS = 25


def session(
    black: tuple[float, float] | None = None,
    tone_db: float = -20.0,
    thresholds: Thresholds | None = None,
) -> MediaQa:
    """4 s of a changing picture and a steady tone; times start at 100 s (a session clock)."""
    qa = MediaQa(thresholds, lipsync=False)
    for i in range(4 * FPS):
        t = i / FPS
        frame = np.full((48, 64), 100, dtype=np.uint8)
        frame[10:20, i % 50 : i % 50 + 10] = 220
        if black and black[0] <= t < black[1]:
            frame[:] = 0
        qa.feed_video(frame, 100.0 + t, (640, 480))
    n = np.arange(4 * RATE)
    amplitude = 10 ** (tone_db / 20)
    pcm = (amplitude * np.sin(2 * np.pi * 1000 * n / RATE)).astype(np.float32)[None, :]
    for i in range(0, pcm.shape[1], 960):
        qa.feed_audio(pcm[:, i : i + 960], 100.0 + i / RATE, RATE)
    return qa


def test_the_keys_other_tools_rely_on() -> None:
    d = session().report({"source": "x.mkv"}).to_dict()
    json.dumps(d)  # plain JSON types only
    assert d["schema_version"] == 1
    assert d["source"] == "x.mkv"
    assert {"fps", "freezes", "black"} <= d["video"].keys()
    assert {"integrated_lufs", "silences", "speech"} <= d["audio"].keys()
    assert {"offset_ms", "confidence", "verdict"} <= d["lipsync"].keys()
    assert d["verdict"] == "pass"
    assert (d["video"]["width"], d["video"]["height"]) == (640, 480)  # the frames' own size
    assert d["video"]["first_frame_s"] == 0.0  # times from the first frame, not the clock
    assert d["audio"]["speech"] == [{"start_s": 0.0, "end_s": 4.0}]
    assert d["audio"]["integrated_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert d["duration_s"] == pytest.approx(4.0, abs=0.05)


def test_a_breached_threshold_fails_the_report() -> None:
    d = session(black=(2.0, 2.5)).report().to_dict()
    # frames 2.00 .. 2.48 s are black: 13 frames of 40 ms
    assert d["video"]["black"] == [{"start_s": 2.0, "duration_s": 0.52}]
    failed = [c for c in d["checks"] if not c["ok"]]
    assert failed == [{"name": "video.black", "value": 1.0, "limit": "<= 0", "ok": False}]
    assert d["verdict"] == "fail"


def test_black_at_the_very_start_is_reported_but_does_not_count() -> None:
    report = session(black=(0.0, 0.5)).report()
    assert report.video is not None and len(report.video.black) == 1
    assert report.verdict == "pass"


def test_thresholds_given_are_checked() -> None:
    thresholds = Thresholds(min_integrated_lufs=-30.0, min_fps=24.0)
    d = session(tone_db=-40.0, thresholds=thresholds).report().to_dict()
    checks = {c["name"]: c for c in d["checks"]}
    assert checks["video.fps"]["ok"] is True
    assert checks["audio.integrated_lufs"]["ok"] is False
    assert checks["audio.integrated_lufs"]["limit"] == ">= -30.0"
    assert d["verdict"] == "fail"


def test_nothing_fed_reports_nothing() -> None:
    report = MediaQa().report()
    assert report.video is None and report.audio is None and report.checks == []
    assert report.to_dict()["lipsync"]["verdict"] == "unknown"
