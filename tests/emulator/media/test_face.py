"""Face renderer: markers and mouth are where the constants say, after a yuv420p round trip."""

from __future__ import annotations

import av
import numpy as np
import pytest

from avatar_rtc.emulator.media import BACKGROUND, MARKERS, FaceRenderer, markers_for, mouth_opening


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
