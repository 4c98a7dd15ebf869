"""Face renderer: markers and mouth are where the constants say, after a yuv420p round trip."""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest

from avatar_rtc.emulator.media import (
    BACKGROUND,
    MARKERS,
    FaceRenderer,
    face,
    markers_for,
    mouth_opening,
)


def _rgb(yuv: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p").to_ndarray(format="rgb24")


def test_markers_and_background() -> None:
    renderer = FaceRenderer()
    rgb = _rgb(renderer.render(0.0))
    assert rgb.shape == (512, 512, 3)
    for marker in MARKERS:
        mean = rgb[marker.region(inset=4)].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array(marker.rgb)).max() < 6, marker
    assert np.abs(rgb[256, 30].astype(int) - BACKGROUND).max() < 6  # left of the face


@pytest.mark.parametrize("opening", [0.0, 0.25, 0.5, 1.0])
def test_mouth_opening_is_measurable(opening: float) -> None:
    rgb = _rgb(FaceRenderer().render(opening))
    assert mouth_opening(rgb) == pytest.approx(opening, abs=0.08)


def test_other_size_and_resized_frames() -> None:
    renderer = FaceRenderer(320, 240)
    yuv = renderer.render(0.8)
    assert yuv.shape == (360, 320)
    rgb = _rgb(yuv)
    for marker in markers_for(320, 240):
        mean = rgb[marker.region(inset=4)].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array(marker.rgb)).max() < 6
    assert mouth_opening(rgb) == pytest.approx(0.8, abs=0.1)
    # A client that rescales the picture still measures the mouth (geometry is relative).
    big = (
        av.VideoFrame.from_ndarray(rgb, format="rgb24")
        .reformat(640, 480)
        .to_ndarray(format="rgb24")
    )
    assert mouth_opening(big) == pytest.approx(0.8, abs=0.1)


def test_render_reuses_buffer_and_leaves_static_parts() -> None:
    renderer = FaceRenderer()
    out = renderer.render(1.0)
    again = renderer.render(0.0, out=out)
    assert again is out
    assert np.array_equal(again, renderer.render(0.0))


def test_open_eyes_are_drawn_once_per_gaze_phase_and_shared() -> None:
    face.clear_open_eyes()
    first, second = FaceRenderer(), FaceRenderer()
    eyes = first._eyes  # the eye patch itself, not the whole frame
    t = 1.36  # eyes open: 1.36 s is past the first blink's close
    patch = eyes.draw(t)
    assert all(not plane.flags.writeable for plane in patch)  # shared: read-only
    # The same gaze phase a turn, or several, later; in another face of the same size: the
    # same arrays, as drawn for that phase afresh.
    for later in (t + face.GAZE_PERIOD, t + 8 * face.GAZE_PERIOD):
        assert face.blink_closure(later) == 0.0
        assert eyes.draw(later) is patch
    assert second._eyes.draw(t + 2 * face.GAZE_PERIOD) is patch
    fresh = eyes._draw(t % face.GAZE_PERIOD, 0.0)
    assert all(np.array_equal(a, b) for a, b in zip(fresh, patch, strict=True))
    # 25 fps over two turns of the gaze: 125 phases, whatever the time
    for k in range(500):
        first.render(0.0, t=k / 25)
    assert len(face._open_eyes) == 125
    # another size draws its own
    FaceRenderer(320, 240).render(0.0, t=t)
    assert len(face._open_eyes) == 126


def test_a_blink_is_drawn_for_its_frame_and_not_kept() -> None:
    face.clear_open_eyes()
    eyes = FaceRenderer()._eyes
    t = 2 * face.BLINK_PERIOD + 0.08  # two thirds closed
    assert 0.5 < face.blink_closure(t) < 1.0
    blink = eyes.draw(t)
    assert face._open_eyes == {}
    open_ = eyes.draw(t + 0.2)  # the lids up again
    assert face.blink_closure(t + 0.2) == 0.0
    assert not np.array_equal(blink[0], eyes._draw(t % face.GAZE_PERIOD, 0.0)[0])
    assert len(face._open_eyes) == 1 and open_ is not blink


def test_the_open_eyes_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    face.clear_open_eyes()
    monkeypatch.setattr(face, "OPEN_EYES_CACHED", 10)
    renderer = FaceRenderer()
    frames = [renderer.render(0.0, t=0.5 + k * 0.013).copy() for k in range(40)]  # 40 phases
    assert len(face._open_eyes) == 10
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
