"""How a stream's readers share it: several readers, async callbacks, a reader cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from avatar_rtc.errors import MediaLostError
from avatar_rtc.media import VideoFormat, VideoFrame, VideoStream
from tests.media.test_decoder import FakeSource, h264_frames
from tests.support import wait_until

FRAMES = h264_frames(12, gop=12)


async def test_a_slow_async_callback_holds_capacity_frames_the_rest_are_dropped() -> None:
    source = FakeSource()
    stream = VideoStream(source, VideoFormat("rgb24"), capacity=2)
    release = asyncio.Event()
    started: list[int] = []
    ended: list[int] = []

    async def model(frame: VideoFrame) -> None:  # slower than the frames come
        started.append(frame.index)
        try:
            await release.wait()
        finally:
            ended.append(frame.index)

    stream.on_frame(model)
    for frame in FRAMES:
        source.push(frame)
    await wait_until(lambda: stream.stats().received == 12, within=30)  # a hang guard
    await asyncio.sleep(0.05)  # the loop ran what the decoder thread handed it
    st = stream.stats()
    assert len(started) == 2 and st.callbacks_dropped == 10  # was: 12 tasks, none dropped
    release.set()
    await wait_until(lambda: len(ended) == 2, within=10)
    source.push(FRAMES[-1])  # a slot is free again: the next frame is called back
    await wait_until(lambda: len(started) == 3, within=10)
    release.clear()
    source.push(FRAMES[-1])
    await wait_until(lambda: len(started) == 4, within=10)
    stream.close()  # the callbacks still running are cancelled
    await wait_until(lambda: len(ended) == 4, within=10)


async def test_two_readers_share_the_frames_and_both_end_on_close() -> None:
    source = FakeSource()
    stream = VideoStream(source, VideoFormat("rgb24"), policy="all")
    readers = [asyncio.create_task(stream.recv()) for _ in range(2)]
    await asyncio.sleep(0.05)  # both waiting
    for frame in FRAMES[:2]:
        source.push(frame)
    got = await asyncio.wait_for(asyncio.gather(*readers), 30)
    assert sorted(frame.index for frame in got) == [0, 1]  # was: one reader never woke
    readers = [asyncio.create_task(stream.recv()) for _ in range(2)]
    await asyncio.sleep(0.05)
    stream.close()
    for reader in readers:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(reader, 10)  # was: the earlier waiter hung after close


async def _a_reader_cancelled_while_converting(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[VideoStream], None] | None = None
) -> VideoStream:
    """A stream with frames 0-2 queued whose reader was cancelled (as by ``asyncio.wait_for``)
    while frame 0 converted, ``meanwhile(stream)`` called just before the cancel."""
    source = FakeSource()
    stream = VideoStream(source, VideoFormat("rgb24"), policy="all")
    for frame in FRAMES[:3]:
        source.push(frame)
    await wait_until(lambda: stream.stats().queued == 3, within=30)  # a hang guard
    converting = asyncio.Event()

    async def slow_finish(item: VideoFrame) -> VideoFrame:
        converting.set()
        await asyncio.sleep(3600)
        return item

    monkeypatch.setattr(stream, "_finish", slow_finish)
    reader = asyncio.create_task(stream.recv())
    await converting.wait()
    if meanwhile is not None:
        meanwhile(stream)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    monkeypatch.undo()
    return stream


async def test_a_reader_cancelled_while_converting_leaves_the_frame_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = await _a_reader_cancelled_while_converting(monkeypatch)
    indices = [(await stream.recv()).index for _ in range(3)]
    assert indices == [0, 1, 2]  # was: frame 0 lost, counted nowhere
    st = stream.stats()
    assert (st.delivered, st.dropped, st.queued) == (3, 0, 0)
    stream.close()


async def test_an_ended_stream_hands_out_its_queue_then_raises_the_error() -> None:
    """The media ended for good (``end``, as the session calls it on a loss): the frames
    already queued still come, then every read raises the typed error (a waiting reader
    too), where a closed stream just stops."""
    source = FakeSource()
    stream = VideoStream(source, VideoFormat("rgb24"), policy="all")
    waiting_stream = VideoStream(source, VideoFormat("rgb24"), policy="all")
    for frame in FRAMES[:3]:
        source.push(frame)
    await wait_until(lambda: stream.stats().queued == 3, within=30)  # (hang guards)
    await wait_until(lambda: waiting_stream.stats().received == 3, within=30)
    for _ in range(3):
        await waiting_stream.recv()
    waiting = asyncio.create_task(waiting_stream.recv())
    await asyncio.sleep(0.05)
    lost = MediaLostError("media lost (no media for 2.0 s) and not back")
    stream.end(lost)
    waiting_stream.end(lost)
    with pytest.raises(MediaLostError):
        await asyncio.wait_for(waiting, 10)
    got = [(await stream.recv()).index for _ in range(3)]
    assert got == [0, 1, 2]  # no frame lost to the end
    for _ in range(2):
        with pytest.raises(MediaLostError):
            await stream.recv()
    assert stream.closed and stream.error is lost
    source.push(FRAMES[3])  # nothing more is taken
    await asyncio.sleep(0.05)
    assert stream.stats().received == 3
    closed = VideoStream(source, VideoFormat("rgb24"))
    closed.close()
    assert [frame async for frame in closed] == [] and closed.error is None


async def test_a_reader_cancelled_mid_conversion_after_end_gives_its_frame_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``end`` keeps the queued frames for the readers: one a cancelled reader was converting
    goes back to the queue too (``close`` would have dropped it)."""

    def lost(stream: VideoStream) -> None:  # the loss comes while frame 0 converts
        stream.end(MediaLostError("lost"))

    stream = await _a_reader_cancelled_while_converting(monkeypatch, meanwhile=lost)
    got = []
    with pytest.raises(MediaLostError):
        while True:
            got.append((await stream.recv()).index)
    assert got == [0, 1, 2], (got, stream.stats())  # was: [1, 2], frame 0 dropped
