"""VideoFormat / AudioFormat refuse what the decoder thread would fail on, frame after frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.media.formats import AudioFormat, VideoFormat


@pytest.mark.parametrize(
    "size", [(160.0, 120.0), (224,), (224, 224, 3), (0, 10), (10, -1), (True, 10), "224x224"]
)
def test_a_video_size_is_two_whole_numbers_above_zero(size: Any) -> None:
    with pytest.raises(ConfigurationError, match="size"):
        VideoFormat("rgb24", size=size)


def test_numpy_integers_are_whole_numbers_too() -> None:
    fmt = VideoFormat("rgb24", size=(np.int64(224), np.int32(160)))  # type: ignore[arg-type]
    assert fmt.size == (224, 160)


@pytest.mark.parametrize(
    ("field", "value"),
    [("sample_rate", 16000.5), ("sample_rate", 0), ("frame_ms", 2.5), ("frame_ms", 0)],
)
def test_audio_rates_and_durations_are_whole_numbers(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):
        AudioFormat(**{field: value})


def test_a_frame_holds_whole_samples() -> None:
    assert AudioFormat(sample_rate=22050, frame_ms=10).frame_samples == 220  # (documented)
    assert AudioFormat(sample_rate=48000, frame_ms=20).frame_samples == 960
