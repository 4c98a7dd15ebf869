"""The shared-memory frame ring: one copy in, a view out, slots owned by one side at a time."""

from __future__ import annotations

import gc
import os
from types import SimpleNamespace

import av
import numpy as np
import pytest

from avatar_rtc.fleet import SessionPool, SharedFrame, frames
from avatar_rtc.fleet.frames import FrameMeta, FrameRing


def picture(width: int, height: int, seed: int) -> av.VideoFrame:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def test_a_written_frame_reads_back_through_another_mapping_without_a_copy() -> None:
    ring = FrameRing.create(2, 48, 32)
    worker = FrameRing.attach(ring.spec)  # what a worker process opens
    try:
        frame = picture(48, 32, 1)
        slot = worker.write(frame)
        assert slot is not None
        shared = ring.frame(FrameMeta(7, slot, 90000, 1.0, 2.0))
        assert shared.job == 7
        assert np.array_equal(shared.array, frame.to_ndarray())
        assert np.shares_memory(shared.array, ring.pixels(slot))  # a view, not a copy
        kept = shared.copy()
        shared.release()
        with pytest.raises(ValueError, match="released"):
            _ = shared.array
        assert np.array_equal(kept, frame.to_ndarray())
    finally:
        worker.close()
        ring.close()


def test_a_full_ring_drops_until_the_reader_releases() -> None:
    ring = FrameRing.create(2, 16, 16)
    try:
        first, second = ring.write(picture(16, 16, 1)), ring.write(picture(16, 16, 2))
        assert {first, second} == {0, 1}
        assert ring.write(picture(16, 16, 3)) is None  # the caller holds both slots
        assert ring.busy() == 2
        assert first is not None
        with ring.frame(FrameMeta(0, first, 0, 0.0, 0.0)):
            pass  # leaving the block releases
        assert ring.write(picture(16, 16, 4)) == first
    finally:
        ring.close()


def test_frames_are_scaled_to_the_ring_size() -> None:
    ring = FrameRing.create(1, 32, 16)
    try:
        grey = av.VideoFrame.from_ndarray(np.full((64, 128, 3), 200, np.uint8), format="rgb24")
        slot = ring.write(grey.reformat(format="yuv420p"))
        assert slot is not None
        pixels = ring.pixels(slot)
        assert pixels.shape == (16, 32, 3)
        assert np.all(np.abs(pixels.astype(int) - 200) <= 3)
    finally:
        ring.close()


def test_an_array_held_past_the_rings_close_stays_readable_then_is_unmapped() -> None:
    ring = FrameRing.create(2, 48, 32)
    frame = picture(48, 32, 3)
    slot = ring.write(frame)
    assert slot is not None
    shared = ring.frame(FrameMeta(0, slot, 0, 0.0, 0.0))
    held = shared.array
    name = ring.spec.name
    ring.close()  # the pool closes its rings while a caller still holds a frame's pixels
    assert np.array_equal(held, frame.to_ndarray())  # was: unmapped under the view, a crash
    with pytest.raises(ValueError, match="pool was closed"):
        _ = shared.array
    with shared:
        pass  # its release (the end of a `with` block spanning the close) is a no-op
    ring.close()  # twice is once
    assert not os.path.exists(f"/dev/shm/{name}")  # the block's name is gone at once
    assert any(memory.name == name for memory in frames._lingering)
    del held
    gc.collect()
    FrameRing.create(1, 8, 8).close()  # a later close unmaps what no view holds any more
    assert not any(memory.name == name for memory in frames._lingering)


def test_handles_of_one_slot_free_it_once_each_is_released() -> None:
    ring = FrameRing.create(1, 16, 16)
    try:
        slot = ring.write(picture(16, 16, 5))
        assert slot is not None
        first, second = ring.frames(FrameMeta(0, slot, 0, 0.0, 0.0), 2)  # two callbacks
        first.release()
        assert np.array_equal(second.array, ring.pixels(slot))  # was: "the frame was released"
        assert ring.write(picture(16, 16, 6)) is None  # the second still holds the slot
        second.release()
        second.release()  # twice is once
        assert ring.busy() == 0 and ring.write(picture(16, 16, 7)) == slot
    finally:
        ring.close()


def test_a_pool_callback_that_raises_does_not_keep_the_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring = FrameRing.create(1, 16, 16)
    pool = SessionPool(1)
    kept: list[SharedFrame] = []

    def fails(frame: SharedFrame) -> None:
        raise RuntimeError("a model error")

    pool.on_frame(fails)
    pool.on_frame(kept.append)  # a second callback: its own handle, still readable
    try:
        for n in range(3):
            slot = ring.write(picture(16, 16, n))
            assert slot == 0  # was: taken for good after the first raise
            pool._deliver(SimpleNamespace(ring=ring), FrameMeta(0, slot, 0, 0.0, 0.0))  # type: ignore[arg-type]
            assert np.array_equal(kept[-1].array, ring.pixels(slot))
            kept[-1].release()
        assert caplog.text.count("frame callback failed") == 3
    finally:
        ring.close()
