"""VideoStream / AudioStream end to end: aiortc sender -> our pipeline -> numpy, on loopback."""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.media import (
    AudioFormat,
    AudioFrame,
    AudioStream,
    VideoFormat,
    VideoFrame,
    VideoStream,
    decoder_for,
)
from avatar_rtc.media.decoder import DecodedFrame, TrackDecoder
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.media.av_sync import TOLERANCE, arrival_allowance
from tests.media.frame_gaps import assert_no_unexplained_gaps
from tests.media.loopback import (
    BLUE,
    GREEN,
    RED,
    WHITE,
    loopback,
    open_loopback,
    rss_bytes,
)
from tests.media.test_decoder import FakeSource, h264_frames
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
# glibc's dynamic mmap threshold keeps freed frame buffers (0.45 MB) in the heap: RSS then shows
# the allocator's high-water marks, which rise in steps for 20+ s (later on a busy machine)
# instead of live memory. A fixed threshold maps and unmaps them.
PROBE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def near(px: np.ndarray, colour: tuple[int, ...], tol: int = 40) -> bool:
    return bool(np.all(np.abs(px.astype(int) - np.array(colour)) <= tol))


T = TypeVar("T")


async def next_frame(stream: AsyncIterator[T], limit: float = 5.0) -> T:
    return await asyncio.wait_for(stream.__anext__(), limit)


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
async def test_video_formats_sizes_and_colours(codec: str) -> None:
    async with loopback(codec=codec, noise=False) as lb:
        pattern = lb.video_track.pattern
        async with VideoStream(lb.video, VideoFormat("rgb24")) as rgb_stream:
            f = await next_frame(rgb_stream)
            assert isinstance(f, VideoFrame)
            rgb = f.array
            assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8
            assert near(rgb[10, 10], RED) and near(rgb[10, -10], GREEN)
            assert near(rgb[-10, 10], BLUE) and near(rgb[-10, -10], WHITE)
            assert near(rgb[120, 60], (128, 128, 128))
            n = pattern.read_counter(rgb)
            assert 0 <= n < 100
            bgr = f.to_ndarray("bgr24")
            assert near(bgr[10, 10], RED[::-1])
            rgba = f.to_ndarray("rgba", size=(64, 48))
            assert rgba.shape == (48, 64, 4) and near(rgba[2, 2], (*RED, 255))
            gray = f.to_ndarray("gray")
            assert gray.shape == (240, 320) and gray[-10, -10] > 220
            y, u, v = f.yuv_planes()
            assert y.shape == (240, 320) and u.shape == v.shape == (120, 160)
            assert f.clock_source in ("arrival", "rtcp-sr") and f.presentation_time >= 0
        async with VideoStream(lb.video, VideoFormat("bgr24", size=(160, 120))) as small:
            g = await next_frame(small)
            assert isinstance(g, VideoFrame)
            assert g.array.shape == (120, 160, 3) and near(g.array[3, 3], RED[::-1])
        async with VideoStream(lb.video, VideoFormat("gray")) as gs:
            h = await next_frame(gs)
            assert isinstance(h, VideoFrame) and h.array.shape == (240, 320)


async def test_audio_16k_mono_sample_count() -> None:
    async with loopback() as lb:
        stream = AudioStream(
            lb.audio, AudioFormat(sample_rate=16000, channels=1, frame_ms=20, dtype="float32")
        )
        frames: list[AudioFrame] = []
        while len(frames) < 100:  # 2 s
            f = await next_frame(stream)
            assert isinstance(f, AudioFrame)
            frames.append(f)
        stream.close()
        decoded = decoder_for(lb.audio).stats().decoded  # 20 ms Opus packets
        assert all(f.data.shape == (320, 1) and f.data.dtype == np.float32 for f in frames)
        assert all(f.sample_rate == 16000 for f in frames)
        # every decoded 20 ms became exactly 320 samples (minus the resampler's few held back)
        produced = stream.stats().received * 320
        assert 0 <= decoded * 320 - produced <= 3 * 320
        # timestamps of the first sample: audio is the A/V clock's master, so they stay
        # sample-exact (video adapts to audio when switching to RTCP SR timing)
        steps = np.diff([f.presentation_time for f in frames])
        assert np.allclose(steps, 0.02, atol=1e-6)
        assert float(np.abs(np.concatenate([f.data for f in frames])).max()) > 0.3  # beeps


@pytest.mark.slow
async def test_av_sync_within_20ms() -> None:
    """The sender flashes video and starts a beep at the same media time each second.

    Every flash, from arrival timing at the start through the switch to SR timing: within 20 ms
    plus what this run's arrivals keep even a correct clock from knowing (tests.media.av_sync).
    """
    async with loopback(noise=False) as lb:
        pattern = lb.video_track.pattern
        flashes: list[VideoFrame] = []
        onsets: list[float] = []
        encoded: list[EncodedFrame] = []
        lb.video.subscribe(encoded.append)
        lb.audio.subscribe(encoded.append)
        vs = VideoStream(lb.video, VideoFormat("rgb24"), policy="all")
        aus = AudioStream(lb.audio, AudioFormat(sample_rate=16000, channels=1), policy="all")

        async def video() -> None:
            async for f in vs:
                if pattern.is_flash(f.array):
                    flashes.append(f)

        async def audio() -> None:
            prev = 0.0
            async for f in aus:
                x = np.abs(f.data[:, 0].astype(np.float32)) / 32768
                loud = np.nonzero(x > 0.1)[0]
                if loud.size and prev < 0.02 and x[: loud[0]].max(initial=0) < 0.02:
                    onsets.append(f.presentation_time + loud[0] / 16000)
                prev = float(x[-40:].max())

        tasks = [asyncio.ensure_future(video()), asyncio.ensure_future(audio())]
        await asyncio.sleep(6.5)
        vs.close()
        aus.close()
        await asyncio.gather(*tasks)
        assert len(flashes) >= 5 and len(onsets) >= 5, (flashes, onsets)
        allowance = arrival_allowance(encoded)
        assert sum(not allowance[f.rtp_timestamp] for f in flashes) >= 3  # on 20 ms alone
        for f in flashes:
            t, extra = f.presentation_time, allowance[f.rtp_timestamp]
            nearest = min(onsets, key=lambda o: abs(o - t))
            print(
                f"flash {t:.4f} beep {nearest:.4f} diff {1000 * (nearest - t):+.1f} ms "
                f"(allowed {1000 * (TOLERANCE + extra):.1f})"
            )
            assert abs(nearest - t) < TOLERANCE + extra, (t, nearest, extra, onsets)


@pytest.mark.slow
async def test_latest_policy_slow_consumer_gets_newest_and_memory_stays_flat() -> None:
    async with loopback(size=(640, 480)) as lb:
        stream = VideoStream(lb.video, VideoFormat("rgb24"))  # policy latest, capacity 1
        for _ in range(10):
            await next_frame(stream)
        # Every decoded frame, seen after the stream's own sink (added first) got it.
        decoded: list[int] = []
        remove = decoder_for(lb.video).add_sink(lambda d: decoded.append(d.encoded.index))
        gc.collect()
        rss0 = rss_bytes()
        await asyncio.sleep(5.0)  # consumer "busy"; ~150 frames arrive
        rss1 = rss_bytes()
        newest = decoded[-1]
        f = await next_frame(stream)
        remove()
        assert isinstance(f, VideoFrame)
        # The newest decoded frame (the stream's sink sees each frame before `decoded` does;
        # with capacity 2 it was the older of the two newest: 40 ms stale)
        assert f.index >= newest, (f.index, newest)
        st = stream.stats()
        assert st.dropped >= 100 and st.queued <= 1
        # 640x480 rgb is 0.9 MB and yuv 0.45 MB: an unbounded queue would add ~70+ MB
        print(f"RSS growth while the consumer slept: {(rss1 - rss0) / 2**20:.1f} MB")
        assert rss1 - rss0 < 12 * 2**20, (rss1 - rss0) / 2**20
        stream.close()


async def test_decoder_runs_only_while_a_stream_consumes() -> None:
    async with loopback() as lb:
        dec = decoder_for(lb.video)
        assert not dec.running
        s1 = VideoStream(lb.video)
        s2 = VideoStream(lb.video, VideoFormat("gray"))
        await next_frame(s1)
        await next_frame(s2)
        assert dec.running
        s1.close()
        assert dec.running
        s2.close()
        assert not dec.running
        decoded = dec.stats().decoded
        await asyncio.sleep(0.5)
        # The stopped thread may still finish the frame it had in hand; a running decoder
        # would have added ~15.
        assert dec.stats().decoded <= decoded + 1
        s3 = VideoStream(lb.video)  # restart: starts at a (PLI-requested) keyframe quickly
        t0 = time.monotonic()
        await next_frame(s3, limit=10.0)
        # Without the PLI it would wait for libx264's next periodic keyframe (250 frames, ~8 s).
        assert time.monotonic() - t0 < 3.0
        s3.close()


async def test_on_frame_callbacks() -> None:
    async with loopback() as lb:
        got: list[VideoFrame] = []
        stream = VideoStream(lb.video, VideoFormat("rgb24", size=(80, 60)))
        remove = stream.on_frame(got.append)
        await wait_until(lambda: len(got) >= 20, within=30.0)  # hang guard
        remove()
        stream.close()
        assert len(got) >= 20
        assert got[-1].array.shape == (60, 80, 3)
        assert [f.index for f in got] == sorted(f.index for f in got)


@pytest.mark.slow
async def test_all_policy_loses_nothing_over_10s() -> None:
    async with loopback() as lb:
        pattern = lb.video_track.pattern
        stream = VideoStream(lb.video, VideoFormat("rgb24"), policy="all")
        numbers: list[int] = []
        async for f in stream:  # 10 s of video at 30 fps (pytest's timeout guards a hang)
            numbers.append(pattern.read_counter(f.array))
            if len(numbers) == 300:
                break
        read = stream.stats()  # (close() drops what is queued then)
        stream.close()
        assert_no_unexplained_gaps(numbers, decoder_for(lb.video).stats())
        assert read.dropped == 0
        assert lb.video.stats().frames_dropped == 0


def test_a_stream_nobody_reads_warns_once_then_counts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The overflow warning of an 'all' stream came back every ~5 s for as long as the session
    lived; now it is said once per stream and each later overflow is counted in its stats."""
    frames = h264_frames(24, gop=24)
    source = FakeSource()
    # Room for every frame at the decoder's input, however long they wait by the fake clock
    # below: only the stream drops.
    decoder = decoder_for(
        source,
        functools.partial(TrackDecoder, video_queue=len(frames), max_queue_delay=float("inf")),
    )
    loop = asyncio.new_event_loop()  # only to read the stream; no network
    stream = VideoStream(
        source, VideoFormat(pixel_format=None), capacity=2, policy="all", loop=loop
    )
    # Each clock reading is 6 s after the previous one: a warning limited to one per 5 s would
    # come back at every overflow.
    clock = itertools.count(0.0, 6.0)
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    caplog.set_level(logging.WARNING, logger="avatar_rtc.media.streams")

    feed = functools.partial(_feed, decoder, source)
    try:
        feed(frames[:12])  # nobody reads
        st = stream.stats()
        assert (st.received, st.queued, st.dropped, st.overflows) == (12, 2, 10, 1)
        for _ in range(2):  # the consumer catches up (the queue empties)...
            loop.run_until_complete(stream.recv())
        feed(frames[12:])  # ...and stalls again
        st = stream.stats()
        assert (st.received, st.delivered, st.dropped, st.overflows) == (24, 2, 20, 2)
    finally:
        stream.close()
        loop.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 frames behind" in warnings[0], warnings


def test_frames_a_close_discards_are_counted_as_dropped() -> None:
    frames = h264_frames(6, gop=6)
    source = FakeSource()
    decoder = decoder_for(source, functools.partial(TrackDecoder, max_queue_delay=float("inf")))
    loop = asyncio.new_event_loop()  # only to read the stream; no network
    stream = VideoStream(
        source, VideoFormat(pixel_format=None), capacity=10, policy="all", loop=loop
    )
    try:
        _feed(decoder, source, frames)
        for _ in range(2):
            loop.run_until_complete(stream.recv())
        stream.close()
        st = stream.stats()
        assert (st.received, st.delivered, st.queued, st.dropped) == (6, 2, 0, 4)
    finally:
        stream.close()
        loop.close()


def test_frames_whose_callbacks_a_close_skips_are_counted_as_dropped() -> None:
    frames = h264_frames(6, gop=6)
    source = FakeSource()
    decoder = decoder_for(source, functools.partial(TrackDecoder, max_queue_delay=float("inf")))
    loop = asyncio.new_event_loop()
    stream = VideoStream(
        source, VideoFormat(pixel_format=None), capacity=10, policy="all", loop=loop
    )
    seen: list[VideoFrame] = []
    stream.on_frame(seen.append)
    try:
        _feed(decoder, source, frames)  # their callbacks wait for the loop...
        stream.close()  # ...which the session's close comes before
        loop.run_until_complete(asyncio.sleep(0.05))
        st = stream.stats()
        assert seen == [] and (st.received, st.delivered, st.dropped) == (6, 0, 6)
    finally:
        stream.close()
        loop.close()


@pytest.mark.parametrize("threaded", [True, False], ids=["decoder-thread", "decoder-on-loop"])
def test_frames_convert_in_a_worker_thread_only_when_the_decoder_has_a_thread_of_its_own(
    threaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames taken after they were decoded (nobody waiting) convert when taken: off the loop
    in a worker thread, unless the decoder runs on the loop anyway (``decode_video_on_loop``):
    a hand-off to a thread and back costs more than it keeps off that loop."""
    frames = h264_frames(4, gop=4)
    source = FakeSource()
    make = functools.partial(TrackDecoder, threaded=threaded, max_queue_delay=float("inf"))
    decoder = decoder_for(source, make)
    loop = asyncio.new_event_loop()
    handed: list[object] = []
    to_thread = loop.run_in_executor

    def counted(executor: object, fn: object, *args: object) -> object:
        handed.append(fn)
        return to_thread(executor, fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "run_in_executor", counted)
    # larger than 320x240: the size past which a conversion leaves the loop
    big = VideoFormat("rgb24", size=(640, 480))
    stream = VideoStream(source, big, capacity=10, policy="all", loop=loop)
    try:
        _feed(decoder, source, frames)
        got = [loop.run_until_complete(stream.recv()) for _ in range(4)]
        assert all(frame.array.shape == (480, 640, 3) for frame in got)
        assert len(handed) == (4 if threaded else 0)
    finally:
        stream.close()
        loop.close()


@pytest.mark.parametrize("threaded", [True, False])
def test_a_size_swscale_refuses_is_raised_to_the_waiting_reader(
    threaded: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader already waiting has frames converted for it as they are decoded: a size
    swscale refuses (VideoFormat cannot know it) failed the decoder's sink there, logged
    frame after frame, and the reader waited for ever."""
    source = FakeSource()
    make = functools.partial(TrackDecoder, threaded=threaded, max_queue_delay=float("inf"))
    decoder = decoder_for(source, make)
    loop = asyncio.new_event_loop()
    stream = VideoStream(source, VideoFormat("rgb24", size=(20000, 20000)), policy="all", loop=loop)

    async def read() -> None:
        waiting = asyncio.ensure_future(stream.recv())
        await asyncio.sleep(0)  # the reader waits before the frames come
        await asyncio.to_thread(_feed, decoder, source, h264_frames(3, gop=3))
        with pytest.raises(ConfigurationError, match="20000x20000"):
            await asyncio.wait_for(waiting, 10)

    try:
        loop.run_until_complete(read())
    finally:
        stream.close()
        loop.close()
    assert "sink failed" not in caplog.text


def _feed(decoder: TrackDecoder, source: FakeSource, batch: list[EncodedFrame]) -> None:
    """Push ``batch`` and wait until the decoder handed out its last frame."""
    done = threading.Event()

    def last_seen(decoded: DecodedFrame) -> None:  # runs after the stream's own sink
        if decoded.encoded.index == batch[-1].index:
            done.set()

    remove = decoder.add_sink(last_seen)
    for frame in batch:
        source.push(frame)
    assert done.wait(10.0), "the decoder did not get through the frames"
    remove()


@pytest.mark.slow
def test_no_consumer_for_30s_keeps_memory_flat() -> None:
    # In its own process: the RSS of a pytest process that ran hundreds of tests is too noisy.
    result = subprocess.run(
        [sys.executable, "-m", "tests.media.memory_probe", "30"],
        cwd=ROOT,
        env=PROBE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    slope, growth = report["slope_mb_s"], report["growth_mb"]
    print(
        f"RSS slope {slope:.3f} MB/s, growth {growth:.1f} MB, "
        f"{report['objects_per_s']:+.1f} objects/s over the last 18 s"
    )
    assert report["video_dropped"] > 500 and report["audio_dropped"] > 100  # bounded: dropped
    # Anything kept per frame (a decoded or encoded frame, a packet, a callback) adds at least
    # 30 objects/s (the frame rate); measured: -0.3 to +3.9/s, idle or with 1-2 cores busy.
    assert abs(report["objects_per_s"]) < 10, report
    # An unbounded 640x480 queue grows ~14 MB/s. Measured after the warm-up, with RSS following
    # live memory (PROBE_ENV): -0.01 to 0.22 MB/s, idle or with 1-2 cores kept busy (without
    # it: up to 0.60).
    assert slope < 0.5, report
    assert growth < 16.0, report


async def test_streams_end_when_the_connection_closes() -> None:
    lb = await open_loopback()
    video = VideoStream(lb.video)
    audio = AudioStream(lb.audio)
    await next_frame(video)
    await next_frame(audio)
    await lb.close()  # receiver.stop() closes the pipelines, which end their streams
    assert video.closed and audio.closed
    with pytest.raises(StopAsyncIteration):
        await next_frame(video)
    assert not decoder_for(lb.video).running and not decoder_for(lb.audio).running


async def test_audio_is_not_decoded_while_nobody_consumes_audio() -> None:
    async with loopback() as lb:
        video = VideoStream(lb.video)
        for _ in range(10):  # ~0.3 s of video: ~15 audio packets meanwhile
            await next_frame(video)
        audio = lb.audio.stats()
        assert audio.packets > 0 and audio.frames > 0  # received and counted all the same
        assert not decoder_for(lb.audio).running
        assert decoder_for(lb.audio).stats().decoded == 0
        assert decoder_for(lb.video).stats().decoded >= 10
        video.close()
