"""VideoFrame conversion and AudioRechunker, on synthetic frames (no network)."""

from __future__ import annotations

import gc
import itertools
import math
from typing import Any

import av
import numpy as np
import pytest

from avatar_rtc.errors import ConfigurationError
from avatar_rtc.media.formats import AudioFormat, PixelFormat
from avatar_rtc.media.frames import AudioRechunker, VideoFrame
from tests.media.loopback import BLUE, GREEN, RED, WHITE, Pattern


def make_frame(w: int = 320, h: int = 240) -> tuple[VideoFrame, Pattern]:
    pattern = Pattern(w, h, noise=False)
    img = pattern.draw(1234, flash=True)
    av_frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    return (
        VideoFrame(
            av_frame,
            rtp_timestamp=90000,
            presentation_time=1.0,
            clock_source="arrival",
            arrival_time=5.0,
            index=7,
        ),
        pattern,
    )


def near(px: np.ndarray, colour: tuple[int, ...], tol: int = 30) -> bool:
    return bool(np.all(np.abs(px.astype(int) - np.array(colour)) <= tol))


def test_formats_shapes_and_colours() -> None:
    f, pattern = make_frame()
    assert (f.width, f.height) == (320, 240)
    rgb = f.to_ndarray("rgb24")
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8
    assert near(rgb[10, 10], RED) and near(rgb[10, -10], GREEN)
    assert near(rgb[-10, 10], BLUE) and near(rgb[-10, -10], WHITE)
    assert near(rgb[120, 60], (128, 128, 128))
    assert pattern.read_counter(rgb) == 1234 and pattern.is_flash(rgb)
    bgr = f.to_ndarray("bgr24")
    assert near(bgr[10, 10], RED[::-1]) and near(bgr[-10, 10], BLUE[::-1])
    rgba = f.to_ndarray("rgba")
    assert rgba.shape == (240, 320, 4) and near(rgba[10, -10], (*GREEN, 255))
    gray = f.to_ndarray("gray")
    assert gray.shape == (240, 320) and gray.dtype == np.uint8
    assert gray[-10, -10] > 230 and abs(int(gray[120, 60]) - 128) < 20
    small = f.to_ndarray("rgb24", size=(160, 120))
    assert small.shape == (120, 160, 3)
    assert near(small[5, 5], RED) and near(small[-5, -5], WHITE)
    assert f.to_ndarray("rgb24", size=(160, 120)) is small  # cached
    with pytest.raises(ValueError):
        f.to_ndarray("yuv444p")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(10.5, 10), [10, 10], (0, 10), (10,), (20_000, 20_000)], ids=repr)
def test_a_size_to_ndarray_cannot_take_is_a_configuration_error(size: Any) -> None:
    """Checked as ``VideoFormat(size=...)`` is (a float was a bare TypeError, a list went
    through, a size beyond swscale PyAV's ArgumentError)."""
    f, _ = make_frame()
    with pytest.raises(ConfigurationError, match=r"size|cannot convert"):
        f.to_ndarray("rgb24", size=size)
    with pytest.raises(ConfigurationError):
        f.to_ndarray(size=size)
    assert f.to_ndarray("rgb24", size=(16, 8)).shape == (8, 16, 3)


def test_yuv_planes_without_conversion() -> None:
    f, _ = make_frame()
    y, u, v = f.yuv_planes()
    assert y.shape == (240, 320) and u.shape == (120, 160) and v.shape == (120, 160)
    assert y[-10, -10] > 230  # white square
    assert v[5, 5] > 200  # red: high Cr


def test_pooled_buffers_are_never_overwritten_while_referenced() -> None:
    f1, _ = make_frame(100, 64)  # padded rows (300 bytes of 336): the pooled copy
    a = f1.to_ndarray("rgb24")
    assert a.flags.owndata
    keep = a.copy()
    for _ in range(10):
        f, _ = make_frame(100, 64)
        f.to_ndarray("gray")
        b = f.to_ndarray("rgb24")
        assert b is not a
        del f, b
    assert np.array_equal(a, keep)
    del f1, a
    gc.collect()


def test_unpadded_rows_are_the_converted_frames_own_buffer() -> None:
    # 320 * 3 bytes a row: swscale pads nothing, so the array is its output frame's buffer
    f1, _ = make_frame(320, 240)
    f2, _ = make_frame(320, 240)
    a, b = f1.to_ndarray("rgb24"), f2.to_ndarray("rgb24")
    assert a.flags.c_contiguous and a.flags.writeable and a.shape == (240, 320, 3)
    assert not a.flags.owndata  # a view of that buffer: no copy
    assert not np.shares_memory(a, b)
    plane: Any = f1.av_frame.planes[0]  # the decoded picture is not what the array points into
    assert not np.shares_memory(a, np.frombuffer(plane, dtype=np.uint8))
    keep = a.copy()
    a[:] = 0  # the user's to write into: the frame converts afresh for another format
    assert f1.to_ndarray("bgr24")[10, 10].tolist() == keep[10, 10, ::-1].tolist()
    del f1
    gc.collect()
    assert np.array_equal(b, f2.to_ndarray("rgb24"))  # cached
    assert a[10, 10].tolist() == [0, 0, 0]  # alive without its frame


@pytest.mark.parametrize(("width", "fmt"), [(100, "rgb24"), (854, "gray")])
def test_padded_rows_are_copied_contiguous(width: int, fmt: PixelFormat) -> None:
    f, _ = make_frame(width, 64)
    arr = f.to_ndarray(fmt)
    assert arr.flags.c_contiguous and arr.shape[:2] == (64, width)
    out = f.av_frame.reformat(format=fmt)
    assert out.planes[0].line_size != width * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    assert np.array_equal(arr, out.to_ndarray())


def sine(n: int, start: int, rate: int = 48000, hz: float = 440.0) -> av.AudioFrame:
    t = (np.arange(start, start + n) / rate).astype(np.float64)
    pcm = (0.3 * np.sin(2 * math.pi * hz * t) * 32767).astype(np.int16)
    stereo = np.repeat(pcm, 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = rate
    return frame


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_rechunker_16k_mono_is_gapless(dtype: str) -> None:
    r = AudioRechunker(AudioFormat(sample_rate=16000, channels=1, frame_ms=20, dtype=dtype))  # type: ignore[arg-type]
    out = []
    for k in range(100):  # 2 s of 20 ms Opus-like frames
        out += r.push(sine(960, 960 * k), 10.0 + k * 0.02, "rtcp-sr", 0.0)
    assert all(f.data.shape == (320, 1) for f in out)
    assert out[0].data.dtype == np.dtype(dtype)
    assert len(out) >= 98  # resampler delay may hold back a few samples
    for a, b in itertools.pairwise(out):
        assert b.presentation_time - a.presentation_time == pytest.approx(0.02, abs=1e-9)
    assert out[0].presentation_time == pytest.approx(10.0)
    assert r.gaps_filled == 0


@pytest.mark.parametrize("source", ["s16 stereo", "fltp mono"])
@pytest.mark.parametrize("rate", [48000, 44100, 16000])
@pytest.mark.parametrize("dtype", ["int16", "float32"])
@pytest.mark.parametrize("channels", [1, 2])
def test_a_centred_signal_keeps_its_level_in_every_format(
    rate: int, dtype: str, channels: int, source: str
) -> None:
    # The same sine on both channels (a voice), or a mono source: mono is their mean, stereo
    # the one channel twice, whatever the rate and type (swresample's float downmix made it
    # 1.41x, past full scale at 0.9; its upmix of mono 0.71x)
    r = AudioRechunker(AudioFormat(rate, channels, 20, dtype))  # type: ignore[arg-type]
    out = []
    for k in range(50):
        frame = sine(960, 960 * k)
        if source == "fltp mono":
            pcm = frame.to_ndarray().reshape(-1, 2)[:, :1].T.astype(np.float32) / 32768
            frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
            frame.sample_rate = 48000
        out += r.push(frame, k * 0.02, "arrival", 0.0)
    pcm = np.concatenate([f.data for f in out])[rate // 10 :]  # past the resampler's start
    peak = float(np.abs(pcm).max()) / (32767 if dtype == "int16" else 1.0)
    assert peak == pytest.approx(0.3, rel=0.02)


def _planar_float_frame(pcm: np.ndarray[Any, Any]) -> av.AudioFrame:
    """(samples, channels) float32 -> a 48 kHz fltp frame, as FFmpeg's Opus decoder gives."""
    layout = "mono" if pcm.shape[1] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T), format="fltp", layout=layout)
    frame.sample_rate = 48000
    return frame


@pytest.mark.parametrize("dtype", ["int16", "float32"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("source_channels", [1, 2])
def test_planar_float_at_the_decoder_rate_is_converted_as_swresample_would(
    monkeypatch: pytest.MonkeyPatch, dtype: str, channels: int, source_channels: int
) -> None:
    # FFmpeg's Opus decoder (PyAV's default, e.g. for a file) gives 48 kHz planar float:
    # mixed and converted in numpy (swresample cost as much as the decoding), to the values
    # swresample gives, within 1 LSB for a mix.
    rng = np.random.default_rng(11)
    pcm = rng.uniform(-1.0, 1.0, size=(960, source_channels)).astype(np.float32)
    # Full scale, past it (both channels alike: swresample clips each before a mix), ties.
    pcm[:6] = [[1.0], [-1.0], [1.2], [-1.2], [0.5 / 32768], [1.5 / 32768]]
    resampled = av.AudioResampler(
        format="s16" if dtype == "int16" else "flt",
        layout="mono" if source_channels == 1 else "stereo",
        rate=48000,
    ).resample(_planar_float_frame(pcm))
    ref = np.concatenate([f.to_ndarray().reshape(-1, source_channels) for f in resampled])
    ref = ref.astype(np.float64)
    if source_channels == 2 and channels == 1:
        ref = ref.mean(axis=1, keepdims=True)
    elif source_channels == 1 and channels == 2:
        ref = np.repeat(ref, 2, axis=1)
    made: list[object] = []
    monkeypatch.setattr(av, "AudioResampler", lambda **kw: made.append(kw))  # not wanted
    r = AudioRechunker(AudioFormat(48000, channels, 20, dtype))  # type: ignore[arg-type]
    frame = _planar_float_frame(pcm)
    (out,) = r.push(frame, 0.0, "arrival", 0.0)
    assert made == [] and out.data.shape == (960, channels)
    assert out.data.dtype == np.dtype(dtype)
    error = np.abs(out.data.astype(np.float64) - ref).max()
    if dtype == "float32":
        assert error <= 1e-7
    else:  # the mean rounds once here, twice through swresample's int16
        assert error <= (0.5 if channels < source_channels else 0.0)
    out.data[:] = 0  # ours to write: not the decoder's frame
    plane: Any = frame.planes[0]
    assert np.array_equal(np.frombuffer(plane, dtype=np.float32, count=960), pcm[:, 0])


@pytest.mark.parametrize("channels", [1, 2])
def test_rechunker_at_the_decoder_rate_mixes_and_copies(channels: int) -> None:
    # 48 kHz s16 stereo in (a session's libopus decoder's output): no resampler, numpy only.
    rng = np.random.default_rng(7)
    pcm = rng.integers(-32768, 32768, size=(960, 2), dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = 48000
    r = AudioRechunker(AudioFormat(sample_rate=48000, channels=channels, frame_ms=20))
    (out,) = r.push(frame, 0.0, "arrival", 0.0)
    if channels == 1:
        exact = (pcm[:, :1].astype(np.int32) + pcm[:, 1:]) // 2
        assert np.abs(out.data.astype(np.int32) - exact).max() <= 1  # no int16 overflow
    else:
        assert np.array_equal(out.data, pcm)
    out.data[:] = 0  # ours to write: not the decoder's frame
    assert np.array_equal(frame.to_ndarray().reshape(-1, 2), pcm)


@pytest.mark.parametrize("lost", [1, 2])
def test_one_lost_20ms_packet_is_filled_and_the_timestamps_keep_step(lost: int) -> None:
    # One lost packet, the commonest loss, was within the 30 ms tolerance: its 20 ms were
    # neither filled nor counted, and the next frame's timestamp jumped 20 ms.
    r = AudioRechunker(AudioFormat(sample_rate=48000, channels=1, frame_ms=20))
    out = []
    for k in [k for k in range(12) if not 5 <= k < 5 + lost]:
        out += r.push(sine(960, 960 * k), 3.0 + k * 0.02, "rtcp-sr", 0.0)
    assert r.gaps_filled == 1 and len(out) == 12
    for a, b in itertools.pairwise(out):
        assert b.presentation_time - a.presentation_time == pytest.approx(0.02, abs=1e-9)
    assert [bool(np.any(f.data)) for f in out[5 : 5 + lost]] == [False] * lost


def test_the_clock_slewing_one_packet_is_neither_filled_nor_trimmed() -> None:
    # AvClock slews a correction at 10 % of media time: 2 ms a 20 ms packet.
    r = AudioRechunker(AudioFormat(sample_rate=48000, channels=1, frame_ms=20))
    out = []
    for k in range(20):
        out += r.push(sine(960, 960 * k), k * 0.022, "rtcp-sr", 0.0)
    assert r.gaps_filled == 0 and r.samples_trimmed == 0 and len(out) == 20


def test_an_audio_frame_converts_on_request_as_a_video_frame_does() -> None:
    r = AudioRechunker(AudioFormat(sample_rate=48000, channels=2, frame_ms=20))
    (frame,) = r.push(sine(960, 0), 0.0, "arrival", 0.0)
    assert frame.to_ndarray() is frame.array is frame.data


def test_rechunker_fills_lost_packets_with_silence() -> None:
    r = AudioRechunker(AudioFormat(sample_rate=48000, channels=2, frame_ms=10))
    out = []
    for k in [0, 1, 2, 5, 6, 7]:  # packets 3 and 4 lost (40 ms)
        out += r.push(sine(960, 960 * k), k * 0.02, "arrival", 0.0)
    assert r.gaps_filled == 1
    samples = sum(f.samples for f in out)
    assert samples == 8 * 960 - (8 * 960) % 480  # lost time became silence: no time squeeze
    assert out[-1].presentation_time == pytest.approx((len(out) - 1) * 0.01)
    silent = [f for f in out if not np.any(f.data)]
    assert len(silent) >= 3
