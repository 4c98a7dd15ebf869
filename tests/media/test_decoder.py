"""TrackDecoder policies with a fake source (no network): bounded input, keyframe resync."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from avatar_rtc.media import codecs
from avatar_rtc.media import decoder as decoder_module
from avatar_rtc.media.decoder import DecodedFrame, TrackDecoder
from avatar_rtc.rtc.encoded_frame import EncodedFrame, MediaKind


class FakeSource:
    kind: MediaKind = "video"

    def __init__(self) -> None:
        self.callbacks: list[Callable[[EncodedFrame], None]] = []
        self.keyframe_requests = 0
        self.frames_released = 1  # "mid-stream"

    def subscribe(self, callback: Callable[[EncodedFrame], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def push(self, frame: EncodedFrame) -> None:
        for cb in list(self.callbacks):
            cb(frame)


def h264_frames(n: int, gop: int) -> list[EncodedFrame]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 64, 48, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.gop_size = gop
    ctx.options = {"tune": "zerolatency", "bframes": "0"}
    out: list[EncodedFrame] = []
    for i in range(n + 5):
        img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for pkt in ctx.encode(frame):
            out.append(_encoded("video", "H264", bytes(pkt), len(out), 1 / 30, pkt.is_keyframe))
    return out[:n]


def _encoded(
    kind: MediaKind, codec: str, data: bytes, index: int, duration: float, keyframe: bool
) -> EncodedFrame:
    """Frame ``index`` of a stream of ``duration``-second frames (90 kHz video, 48 kHz audio)."""
    clock_rate = 90000 if kind == "video" else 48000
    return EncodedFrame(
        kind=kind,
        codec=codec,
        data=data,
        rtp_timestamp=round(index * duration * clock_rate),
        clock_rate=clock_rate,
        keyframe=keyframe,
        presentation_time=index * duration,
        clock_source="arrival",
        arrival_time=time.monotonic(),
        index=index,
    )


def test_decoder_behind_drops_to_next_keyframe_and_asks_for_one() -> None:
    frames = h264_frames(60, gop=20)
    assert len([f for f in frames if f.keyframe]) >= 3  # x264 may add scene-cut keyframes
    source = FakeSource()
    dec = TrackDecoder(source, video_queue=4)
    got: list[DecodedFrame] = []

    def slow_sink(frame: DecodedFrame) -> None:
        got.append(frame)
        time.sleep(0.02)  # a consumer much slower than the input

    remove = dec.add_sink(slow_sink)
    assert dec.running and source.keyframe_requests == 1  # joined mid-stream: asks at once
    for f in frames:
        source.push(f)  # a burst: far more than the 4-frame input queue
        time.sleep(0.005)
    idle_since = time.monotonic()
    seen = 0
    while time.monotonic() - idle_since < 0.3:  # wait until the decoder is idle
        if len(got) != seen:
            seen, idle_since = len(got), time.monotonic()
        time.sleep(0.02)
    remove()
    st = dec.stats()
    assert st.dropped_behind > 0 and st.decode_errors == 0
    assert source.keyframe_requests >= 2
    # after every drop decoding resumed on a keyframe: indices are keyframe-led runs
    indices = [g.encoded.index for g in got]
    assert indices[0] == 0
    for a, b in itertools.pairwise(indices):
        assert b == a + 1 or frames[b].keyframe
    assert not dec.running
    assert not source.callbacks  # unsubscribed when the last sink left


def test_a_decoder_behind_in_time_drops_too() -> None:
    """Fewer frames than the cap, but the oldest waited longer than ``max_queue_delay``."""
    frames = h264_frames(60, gop=20)
    source = FakeSource()
    dec = TrackDecoder(source, video_queue=1000, max_queue_delay=0.05)
    got: list[DecodedFrame] = []

    def slow_sink(frame: DecodedFrame) -> None:
        got.append(frame)
        time.sleep(0.02)

    remove = dec.add_sink(slow_sink)
    for f in frames:
        source.push(f)
        time.sleep(0.005)
    remove()
    assert dec.stats().dropped_behind > 0


def test_a_burst_such_as_an_outages_tail_is_decoded_in_full() -> None:
    """Dozens of frames at once (an outage's NACKed tail): each references the one before,
    so dropping the queue would lose them all up to the next keyframe. The old 8-frame queue
    did; the default queue holds them (the delay bound is made generous here: this test is
    not about how fast a busy machine decodes)."""
    frames = h264_frames(50, gop=100)
    source = FakeSource()
    dec = TrackDecoder(source, max_queue_delay=60.0)
    got: list[int] = []
    done = threading.Event()

    def sink(frame: DecodedFrame) -> None:
        got.append(frame.encoded.index)
        if frame.encoded.index == len(frames) - 1:
            done.set()

    remove = dec.add_sink(sink)
    for f in frames:  # all at once
        source.push(f)
    assert done.wait(30.0)
    remove()
    assert got == list(range(len(frames))) and dec.stats().dropped_behind == 0


def test_decoder_starts_at_a_keyframe() -> None:
    frames = h264_frames(30, gop=10)
    source = FakeSource()
    # Room for the whole input: this test is about the start, not about a decoder that a busy
    # machine leaves behind (that one drops to the next keyframe, see above).
    dec = TrackDecoder(source, video_queue=len(frames))
    got: list[int] = []
    ready = threading.Event()

    def sink(frame: DecodedFrame) -> None:
        got.append(frame.encoded.index)
        if frame.encoded.index == 29:
            ready.set()

    remove = dec.add_sink(sink)
    for f in frames[3:]:  # joins mid-GOP: frames 3..9 cannot be decoded
        source.push(f)
        time.sleep(0.01)
    assert ready.wait(5.0)
    remove()
    assert got == list(range(10, 30))
    assert dec.stats().skipped_to_keyframe == 7


def test_a_restarted_decoder_delivers_nothing_from_the_stopped_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session's first-frame hook stops the decoder and a new stream restarts it at once:
    the new stream must start at a keyframe, even while the old thread finishes a decode."""
    frames = h264_frames(11, gop=10)
    assert frames[0].keyframe and frames[10].keyframe
    armed = threading.Event()  # hold the next decode...
    decoding = threading.Event()  # ...(the old thread is inside decode() with frame 1)...
    finish = threading.Event()  # ...until this is set

    class HeldDecoder:
        def __init__(self, ctx: Any) -> None:
            self._ctx = ctx

        def decode(self, packet: Any) -> Any:
            out = self._ctx.decode(packet)
            if armed.is_set():
                armed.clear()
                decoding.set()
                finish.wait(5.0)
            return out

    monkeypatch.setattr(
        decoder_module, "create_decoder", lambda *a: HeldDecoder(codecs.create_decoder(*a))
    )
    source = FakeSource()
    dec = TrackDecoder(source, video_queue=len(frames))
    first: list[int] = []
    second: list[int] = []
    remove_first = dec.add_sink(lambda f: first.append(f.encoded.index))
    source.push(frames[0])
    deadline = time.monotonic() + 5.0  # hang guard
    while not first and time.monotonic() < deadline:
        time.sleep(0.01)
    armed.set()
    source.push(frames[1])
    assert decoding.wait(5.0)
    remove_first()  # stops the decoder thread (it exits after its current frame)...
    remove_second = dec.add_sink(lambda f: second.append(f.encoded.index))  # ...a new one starts
    finish.set()
    for f in frames[2:]:
        source.push(f)
    deadline = time.monotonic() + 5.0
    while 10 not in second and time.monotonic() < deadline:
        time.sleep(0.01)
    remove_second()
    assert first == [0]
    assert second == [10], "the new stream must start at the keyframe it waited for"


def test_a_pipeline_and_its_shared_decoder_are_freed_together() -> None:
    import gc
    import weakref

    from avatar_rtc.media.decoder import decoder_for
    from avatar_rtc.rtc.receiver import ReceivePipeline

    pipeline = ReceivePipeline("video")
    decoder = decoder_for(pipeline)
    assert decoder_for(pipeline) is decoder  # one shared decoder per source
    ref = weakref.ref(pipeline)
    del pipeline, decoder
    gc.collect()
    assert ref() is None, "the decoder kept its pipeline (and the aiortc receiver) alive"


class FakeAudioSource(FakeSource):
    kind: MediaKind = "audio"


def opus_frames(n: int) -> list[EncodedFrame]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    out: list[EncodedFrame] = []
    t = np.arange(960 * (n + 5)) / 48000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    for i in range(n + 5):
        chunk = np.repeat(pcm[i * 960 : (i + 1) * 960], 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        for pkt in ctx.encode(frame):
            out.append(_encoded("audio", "opus", bytes(pkt), len(out), 0.02, True))
    return out[:n]


def test_audio_decodes_where_its_packets_arrive_without_a_thread() -> None:
    """An Opus packet decodes in tens of µs: handing it to a thread and back cost more."""
    source = FakeAudioSource()
    dec = TrackDecoder(source)
    got: list[tuple[int, int, threading.Thread]] = []
    threads_before = set(threading.enumerate())
    remove = dec.add_sink(
        lambda f: got.append((f.encoded.index, f.frame.samples, threading.current_thread()))
    )
    assert dec.running
    assert set(threading.enumerate()) == threads_before, "no decoder thread for audio"
    for frame in opus_frames(10):
        source.push(frame)
        # decoded before push() returns, on the pushing thread
        assert got and got[-1][0] == frame.index and got[-1][2] is threading.current_thread()
    remove()
    assert not dec.running and not source.callbacks
    assert [index for index, _, _ in got] == list(range(10))
    assert {samples for _, samples, _ in got} == {960}
    assert dec.stats().decoded == 10 and dec.stats().decode_errors == 0


def test_audio_on_a_thread_when_asked() -> None:
    source = FakeAudioSource()
    dec = TrackDecoder(source, threaded=True)
    got: list[threading.Thread] = []
    done = threading.Event()

    def sink(f: DecodedFrame) -> None:
        got.append(threading.current_thread())
        if len(got) == 5:
            done.set()

    remove = dec.add_sink(sink)
    for frame in opus_frames(5):
        source.push(frame)
    assert done.wait(5.0)
    remove()
    assert all(t is not threading.current_thread() for t in got)
    assert {t.name for t in got} == {"avatar-rtc-audio-decoder"}


def test_bad_audio_packets_are_counted_logged_once_a_run_and_the_next_one_decodes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = FakeAudioSource()
    dec = TrackDecoder(source)
    got: list[int] = []
    remove = dec.add_sink(lambda f: got.append(f.encoded.index))
    frames = opus_frames(4)
    garbage = [dataclasses.replace(frames[1], data=b"\xff" * 3, index=90 + i) for i in range(3)]
    with caplog.at_level("WARNING", logger="avatar_rtc.media.decoder"):
        source.push(frames[0])
        for bad in garbage:  # a run of three: one warning
            source.push(bad)
        source.push(frames[2])
        source.push(garbage[0])  # a new run after a good packet: logged again
        source.push(frames[3])
    remove()
    assert got == [0, 2, 3]
    assert dec.stats().decode_errors == 4
    warnings = [r for r in caplog.records if "decode error" in r.getMessage()]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert source.keyframe_requests == 0, "audio has no keyframes to ask for"


def test_a_codec_without_a_decoder_is_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = FakeAudioSource()
    dec = TrackDecoder(source)
    remove = dec.add_sink(lambda f: None)
    unknown = [dataclasses.replace(f, codec="G7221") for f in opus_frames(3)]
    with caplog.at_level("ERROR", logger="avatar_rtc.media.decoder"):
        for frame in unknown:
            source.push(frame)
    remove()
    assert dec.stats().decode_errors == 3
    errors = [r for r in caplog.records if "cannot create a G7221 decoder" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in caplog.records]


class ClosedSource(FakeSource):
    closed = True


def test_a_sink_added_to_a_closed_source_ends_at_once_and_starts_nothing() -> None:
    source = ClosedSource()
    dec = TrackDecoder(source)
    ended: list[bool] = []
    remove = dec.add_sink(lambda decoded: None, on_end=lambda: ended.append(True))
    assert ended == [True]  # called at once: a stream on it stops waiting
    assert not dec.running and not source.callbacks  # no thread, no subscription
    assert source.keyframe_requests == 0
    remove()  # a no-op, harmless
    assert not dec.running
