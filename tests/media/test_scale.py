"""scale(): one swscale context per thread gives the pixels a fresh context gives."""

from __future__ import annotations

import threading
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from avatar_rtc.media.scale import scale


def _source(seed: int, width: int = 64, height: int = 48) -> av.VideoFrame:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _reference(frame: av.VideoFrame, **kwargs: Any) -> npt.NDArray[Any]:
    # PyAV's own path: a context made for this one frame
    fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    return np.asarray(fresh.reformat(threads=1, **kwargs).to_ndarray())


def test_successive_conversions_match_a_fresh_context_each() -> None:
    # format, size and source size change between calls: the context must follow each change
    calls: list[tuple[av.VideoFrame, dict[str, Any]]] = [
        (_source(1), {"format": "rgb24"}),
        (_source(2), {"format": "rgb24"}),
        (_source(3), {"format": "gray", "width": 32, "height": 24}),
        (_source(4), {"format": "rgb24"}),
        (_source(5, 80, 60), {"format": "rgb24"}),
        (_source(6, 80, 60), {"format": "bgr24", "width": 40, "height": 30}),
    ]
    for frame, kwargs in calls:
        got = scale(frame, **kwargs).to_ndarray()
        assert np.array_equal(got, _reference(frame, **kwargs)), kwargs


def test_a_conversion_does_not_write_into_an_earlier_result() -> None:
    first = scale(_source(7), format="rgb24")
    kept = first.to_ndarray().copy()
    scale(_source(8), format="rgb24")
    assert np.array_equal(first.to_ndarray(), kept)


def test_threads_converting_at_once_each_get_their_own_frames_right() -> None:
    expected = [_reference(_source(seed), format="rgb24") for seed in range(8)]
    mismatches: list[int] = []

    def convert(offset: int) -> None:
        # a source frame per thread: PyAV's reformat edits its input's colour tags meanwhile
        frames = [_source(seed) for seed in range(8)]
        for rounds in range(25):
            i = (offset + rounds) % len(frames)
            if not np.array_equal(scale(frames[i], format="rgb24").to_ndarray(), expected[i]):
                mismatches.append(i)

    threads = [threading.Thread(target=convert, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []
