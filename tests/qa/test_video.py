"""VideoAnalyser on synthetic grey frames: freezes of both kinds, pauses, black runs, rates."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_rtc.qa.video import VideoAnalyser, VideoResult

FPS = 25
SIZE = 64
# Faults are cut on the 40 ms frame grid: a measured length is within half a frame of the truth.
HALF_FRAME = 0.5 / FPS + 1e-6


def picture(index: int, noise: int = 0, seed: int = 0) -> np.ndarray:
    """A mid-grey frame with a bright bar that moves 4 px a frame; optional +-noise levels."""
    frame = np.full((SIZE, SIZE), 120, dtype=np.uint8)
    x = (index * 4) % (SIZE - 8)
    frame[20:44, x : x + 8] = 230
    if noise:
        rng = np.random.default_rng(seed)
        jitter = rng.integers(-noise, noise + 1, frame.shape)
        frame = np.clip(frame.astype(int) + jitter, 0, 255).astype(np.uint8)
    return frame


def run(
    seconds: float = 10.0,
    *,
    skip: tuple[float, float] | None = None,
    repeat: tuple[float, float] | None = None,
    black: tuple[float, float] | None = None,
    end: float | None = None,
) -> VideoResult:
    """``seconds`` of frames; ``end``: where the observation ends (the audio's end)."""
    analyser = VideoAnalyser()
    held = None
    for i in range(round(seconds * FPS)):
        t = i / FPS
        if skip and skip[0] <= t < skip[1] - 1e-9:
            continue
        if repeat and repeat[0] <= t < repeat[1] - 1e-9:
            assert held is not None
            # The same picture again, with the small noise a codec adds: still not new.
            analyser.feed(picture(held, noise=1, seed=i), 1000.0 + t)
            continue
        frame = picture(i)
        if black and black[0] <= t < black[1] - 1e-9:
            frame = np.zeros_like(frame)
        analyser.feed(frame, 1000.0 + t)
        held = i
    return analyser.result(end=None if end is None else 1000.0 + end)


def test_clean_video_has_nothing_to_report() -> None:
    r = run()
    assert r.frames == r.new_frames == 250
    assert r.fps == pytest.approx(25.0)
    assert r.harmonic_fps == pytest.approx(25.0)
    assert (r.freezes, r.pauses, r.black) == ([], [], [])
    assert (r.width, r.height) == (SIZE, SIZE)


@pytest.mark.parametrize("kind", ["missing", "repeated"])
def test_a_700ms_freeze_is_found_once_with_its_start_and_length(kind: str) -> None:
    gap = (4.0, 4.7)
    r = run(skip=gap) if kind == "missing" else run(repeat=gap)
    assert len(r.freezes) == 1
    freeze = r.freezes[0]
    assert freeze.kind == kind
    assert freeze.start - 1000.0 == pytest.approx(4.0, abs=0.005)
    assert freeze.duration == pytest.approx(0.7, abs=HALF_FRAME)
    assert r.harmonic_fps is not None and r.harmonic_fps < 20.0  # a freeze weighs heavily
    if kind == "repeated":
        assert r.frames == 250 and r.new_frames == 250 - 18  # 4.00 .. 4.68 s


def test_one_missing_frame_is_no_freeze() -> None:
    # 80 ms between frames < max(3 x 40, 40 + 150) ms.
    assert run(skip=(4.0, 4.04)).freezes == []


def test_just_below_and_above_the_w3c_threshold() -> None:
    # Mean 40 ms: the threshold is 190 ms. A 160 ms gap (interval 200 ms) is a freeze, a
    # 120 ms gap (interval 160 ms) is not.
    assert run(skip=(4.0, 4.12)).freezes == []
    assert len(run(skip=(4.0, 4.16)).freezes) == 1


def test_no_freeze_before_five_frames() -> None:
    assert run(skip=(0.08, 1.0)).freezes == []
    assert len(run(skip=(0.20, 1.0)).freezes) == 1


def test_a_picture_frozen_from_its_first_frame_is_a_freeze() -> None:
    # No new frames to learn a rate from: the 40 ms of the frames that came is the mean.
    r = run(repeat=(0.04, 1.0))
    assert len(r.freezes) == 1
    assert r.freezes[0].kind == "repeated"
    assert r.freezes[0].start - 1000.0 == pytest.approx(0.04, abs=0.005)
    assert r.freezes[0].duration == pytest.approx(0.96, abs=HALF_FRAME)


def test_a_picture_frozen_from_its_first_frame_to_the_end_is_a_freeze() -> None:
    r = run(repeat=(0.04, 10.0))
    assert (r.frames, r.new_frames) == (250, 1)
    assert len(r.freezes) == 1
    assert r.freezes[0].kind == "repeated"
    assert r.freezes[0].duration == pytest.approx(9.92, abs=HALF_FRAME)


def test_a_still_start_under_the_threshold_is_no_freeze() -> None:
    # 160 ms between the first two new frames is under the 190 ms threshold; 200 ms is not.
    assert run(repeat=(0.04, 0.16)).freezes == []
    assert len(run(repeat=(0.04, 0.20)).freezes) == 1


def analyse(frames: list[tuple[float, np.ndarray]]) -> VideoResult:
    analyser = VideoAnalyser()
    for t, frame in frames:
        analyser.feed(frame, t)
    return analyser.result()


@pytest.mark.parametrize(("fps", "every"), [(25, 8), (25, 6), (30, 7)])
def test_a_picture_that_changes_slowly_from_the_start_is_no_freeze(fps: int, every: int) -> None:
    # A new picture every 0.24-0.32 s: against the frame rate, its first intervals were
    # freezes (4 of them); against their own median they are not.
    frames = [(i / fps, picture(i // every, noise=1, seed=i)) for i in range(10 * fps)]
    assert analyse(frames).freezes == []
    # A clip over before the 6th new picture: its intervals are judged at the end, alike.
    assert analyse(frames[: 4 * every + 2]).freezes == []


def test_a_still_picture_after_a_black_start_is_one_freeze() -> None:
    # Black for 1 s (a black run, not a freeze), then the same picture for 2 s, then motion:
    # the black run's interval does not set the rate the still one is judged by.
    black = np.zeros((SIZE, SIZE), dtype=np.uint8)
    frames = [(i / FPS, black) for i in range(25)]
    frames += [(1.0 + i / FPS, picture(0, noise=1, seed=i)) for i in range(50)]
    frames += [(3.0 + i / FPS, picture(1 + i)) for i in range(100)]
    r = analyse(frames)
    assert [(round(f.start, 3), round(f.duration, 3), f.kind) for f in r.freezes] == [
        (1.04, 1.96, "repeated")
    ]


def test_more_than_5s_without_a_frame_is_a_pause_not_a_freeze() -> None:
    r = run(seconds=15.0, skip=(4.0, 9.5))
    assert r.freezes == []
    assert len(r.pauses) == 1
    assert r.pauses[0].start - 1000.0 == pytest.approx(3.96, abs=0.005)
    assert r.pauses[0].duration == pytest.approx(5.56, abs=0.005)  # 3.96 -> 9.52 s


def test_a_500ms_black_run_is_found_and_is_not_a_freeze() -> None:
    r = run(black=(6.0, 6.5))
    assert len(r.black) == 1
    assert r.black[0].start - 1000.0 == pytest.approx(6.0, abs=0.005)
    assert r.black[0].duration == pytest.approx(0.5, abs=HALF_FRAME)
    assert r.freezes == []


def test_black_shorter_than_100ms_is_not_reported() -> None:
    assert run(black=(6.0, 6.08)).black == []


def test_a_frame_97_percent_black_is_not_black() -> None:
    analyser = VideoAnalyser()
    for i in range(25):
        frame = np.zeros((100, 100), dtype=np.uint8)
        frame[:3, :] = 200  # 3 % bright
        frame[50, i] = 200  # and changing
        analyser.feed(frame, i / FPS)
    assert analyser.result().black == []


def test_black_still_going_at_the_end_is_reported() -> None:
    r = run(seconds=5.0, black=(4.0, 5.0))
    assert len(r.black) == 1
    assert r.black[0].duration == pytest.approx(1.0, abs=0.005)


def test_a_picture_frozen_until_the_end_is_reported() -> None:
    r = run(seconds=5.0, repeat=(4.0, 5.0))
    assert [f.kind for f in r.freezes] == ["repeated"]
    assert r.freezes[0].start - 1000.0 == pytest.approx(4.0, abs=0.005)


def test_frames_that_stop_before_the_sound_are_a_freeze_up_to_its_end() -> None:
    r = run(seconds=3.0, end=5.0)
    assert [f.kind for f in r.freezes] == ["missing"] and r.pauses == []
    assert r.freezes[0].start - 1000.0 == pytest.approx(3.0, abs=0.005)  # the next frame due
    assert r.freezes[0].end - 1000.0 == pytest.approx(5.0, abs=0.005)


def test_frames_that_stop_more_than_5s_before_the_sound_are_a_pause() -> None:
    r = run(seconds=3.0, end=10.0)
    assert r.freezes == []
    assert len(r.pauses) == 1
    assert r.pauses[0].start - 1000.0 == pytest.approx(3.0 - 1 / FPS, abs=0.005)
    assert r.pauses[0].end - 1000.0 == pytest.approx(10.0, abs=0.005)


def test_a_frozen_picture_whose_frames_then_stop_is_one_freeze_to_the_end() -> None:
    r = run(seconds=6.0, repeat=(3.0, 6.0), end=9.0)
    assert [(f.kind, round(f.start - 1000.0, 2), round(f.end - 1000.0, 2)) for f in r.freezes] == [
        ("repeated", 3.0, 9.0)
    ]
    # Past 5 s without frames: the repeated freeze up to the last frame, then a pause.
    r = run(seconds=6.0, repeat=(3.0, 6.0), end=12.5)
    assert [(f.kind, round(f.start - 1000.0, 2)) for f in r.freezes] == [("repeated", 3.0)]
    assert [round(p.end - 1000.0, 2) for p in r.pauses] == [12.5]


def test_the_last_frames_still_on_their_way_are_no_freeze() -> None:
    # The observation stopped under a second after the last frame: nothing stopped.
    assert run(seconds=5.0, end=5.9).freezes == []


def test_a_slow_drift_adds_up_to_a_new_frame() -> None:
    # Each frame brighter by 1 level (below the threshold): compared with the last *new*
    # frame, every second or third frame is new, so a slow fade is no freeze.
    analyser = VideoAnalyser()
    for i in range(100):
        analyser.feed(np.full((SIZE, SIZE), 50 + i, dtype=np.uint8), i / FPS)
    r = analyser.result()
    assert r.freezes == []
    assert 30 <= r.new_frames <= 50
