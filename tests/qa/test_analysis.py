"""MediaQa: holes in the audio's times and tracks that stop before the other one."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_rtc.qa.analysis import MediaQa
from avatar_rtc.qa.report import QaReport
from avatar_rtc.qa.thresholds import Thresholds

RATE = 48000
CHUNK = 0.02  # seconds of audio a chunk, as the session's rechunker hands them
FPS = 25


def _tone() -> np.ndarray:
    t = np.arange(round(CHUNK * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32).reshape(1, -1)


def _run(
    seconds: float,
    *,
    audio_gap: tuple[float, float] | None = None,
    audio_until: float | None = None,
    video_until: float | None = None,
    thresholds: Thresholds | None = None,
) -> QaReport:
    """A tone and a moving picture for ``seconds``; no audio chunk inside ``audio_gap`` or
    after ``audio_until``, no frame after ``video_until``."""
    qa = MediaQa(thresholds, lipsync=False)
    chunk = _tone()
    for i in range(round(seconds / CHUNK)):
        t = i * CHUNK
        if audio_gap is not None and audio_gap[0] <= t < audio_gap[1] - 1e-9:
            continue
        if audio_until is not None and t >= audio_until - 1e-9:
            break
        qa.feed_audio(chunk, t, RATE)
    for i in range(round(seconds * FPS)):
        t = i / FPS
        if video_until is not None and t >= video_until - 1e-9:
            break
        frame = np.full((32, 32), 100, np.uint8)
        frame[:, (2 * i) % 32] = 250  # moves every frame
        qa.feed_video(frame, t)
    return qa.report()


def test_clean_media_has_nothing_missing_and_passes() -> None:
    report = _run(6.0)
    assert report.audio is not None and report.audio.missing == []
    assert report.video is not None and (report.video.freezes, report.video.pauses) == ([], [])
    assert report.verdict == "pass"


def test_a_hole_in_the_audio_times_is_silence_missing_and_the_rest_keeps_its_time() -> None:
    report = _run(6.0, audio_gap=(2.0, 3.5))
    audio = report.audio
    assert audio is not None
    [missing] = audio.missing
    assert missing.start == pytest.approx(2.0) and missing.duration == pytest.approx(1.5)
    # Before, the samples were counted from the first chunk: the hole vanished and all that
    # followed came 1.5 s early (one speech span from 0 to 4.5 s).
    assert audio.duration == pytest.approx(6.0, abs=0.011)
    assert [round(s.start, 1) for s in audio.speech] == [0.0, 3.5]
    assert any(abs(s.start - 2.0) < 0.05 and s.duration > 1.4 for s in audio.silences)


def test_audio_that_stops_before_the_video_is_missing_up_to_its_end() -> None:
    report = _run(6.0, audio_until=3.0)
    assert report.audio is not None and report.video is not None
    [missing] = report.audio.missing
    assert missing.start == pytest.approx(3.0)
    assert missing.end == pytest.approx(report.video.last_time)
    assert report.verdict == "pass"  # not checked by default (a sender may send no audio)
    checked = _run(6.0, audio_until=3.0, thresholds=Thresholds(max_missing=0))
    assert [c.name for c in checked.checks if not c.ok] == ["audio.missing"]


def test_audio_whose_times_step_back_still_ends_where_it_went_furthest() -> None:
    qa = MediaQa(lipsync=False)
    for t in [i * CHUNK for i in range(300)] + [2.0 + i * CHUNK for i in range(100)]:
        qa.feed_audio(_tone(), t, RATE)  # 0..6 s, then 2..4 s again (a file's times)
    for i in range(6 * FPS):
        frame = np.full((32, 32), 100, np.uint8)
        frame[:, (2 * i) % 32] = 250
        qa.feed_video(frame, i / FPS)
    report = qa.report()
    assert report.audio is not None and report.audio.missing == []
    assert report.video is not None and report.video.freezes == []


def test_video_that_stops_before_the_audio_is_a_freeze_and_fails() -> None:
    report = _run(6.0, video_until=3.0)
    assert report.video is not None
    [freeze] = report.video.freezes
    assert freeze.kind == "missing"
    assert freeze.start == pytest.approx(3.0) and freeze.end == pytest.approx(6.0)
    assert [c.name for c in report.checks if not c.ok] == ["video.freezes"]
