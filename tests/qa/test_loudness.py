"""BS.1770-4 loudness and true peak on signals whose loudness the standard states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_rtc.qa.loudness import LoudnessMeter, LoudnessResult

RATE = 48_000


def tone(seconds: float, amplitude: float, freq: float = 1000.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def measure(*channels: np.ndarray, rate: int = RATE, chunk: int = 960) -> LoudnessResult:
    samples = np.stack(channels)
    meter = LoudnessMeter(rate, samples.shape[0])
    for i in range(0, samples.shape[1], chunk):
        meter.feed(samples[:, i : i + chunk])
    return meter.result()


def test_full_scale_1khz_sine_in_one_channel_is_minus_3_01_lufs() -> None:
    # BS.1770-4 section 2.1: the reference the K-weighting is normalised to.
    assert measure(tone(5.0, 1.0)).integrated_lufs == pytest.approx(-3.01, abs=0.05)


def test_two_channels_add_their_power() -> None:
    x = tone(5.0, 0.1)
    mono = measure(x).integrated_lufs
    stereo = measure(x, x).integrated_lufs
    assert mono is not None and stereo is not None
    assert stereo - mono == pytest.approx(10 * math.log10(2), abs=0.01)


def test_the_same_at_another_sample_rate() -> None:
    at_44k = measure(tone(5.0, 0.1, rate=44_100), rate=44_100).integrated_lufs
    assert at_44k == pytest.approx(measure(tone(5.0, 0.1)).integrated_lufs, abs=0.05)


def test_silence_is_gated_out_absolutely() -> None:
    x = tone(5.0, 0.1)
    with_silence = np.concatenate([x, np.zeros(5 * RATE, np.float32)])
    # (the three blocks across the edge are partly silent but pass the gates: -0.13 LU)
    assert measure(with_silence).integrated_lufs == pytest.approx(
        measure(x).integrated_lufs, abs=0.2
    )
    assert measure(np.zeros(RATE, np.float32)).integrated_lufs is None


def test_quiet_passages_are_gated_out_relatively() -> None:
    # 30 dB quieter than the rest: under the -10 LU relative gate, so it does not count
    # (ungated, the mean power would be 3 dB lower; the blocks across the edge: -0.13 LU).
    loud, quiet = tone(5.0, 0.3), tone(5.0, 0.3 / 31.6)
    both = measure(np.concatenate([loud, quiet])).integrated_lufs
    assert both == pytest.approx(measure(loud).integrated_lufs, abs=0.2)


def test_chunk_size_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(3 * RATE) * 0.05).astype(np.float32)
    a, b = measure(x, chunk=960), measure(x, chunk=7919)
    assert a.integrated_lufs == pytest.approx(b.integrated_lufs, abs=1e-6)
    assert a.true_peak_dbtp == pytest.approx(b.true_peak_dbtp, abs=0.01)


def test_true_peak_finds_the_peak_between_samples() -> None:
    # A sine at rate/4 sampled 45 degrees off its peaks: every sample is at 0.707 of it
    # (-3 dB), the true peak is the amplitude.
    n = np.arange(RATE)
    x = (0.5 * np.sin(2 * math.pi * n / 4 + math.pi / 4)).astype(np.float32)
    sample_peak = 20 * math.log10(float(np.max(np.abs(x))))
    result = measure(x)
    assert sample_peak == pytest.approx(-9.03, abs=0.05)
    assert result.true_peak_dbtp == pytest.approx(20 * math.log10(0.5), abs=0.3)


def test_momentary_blocks_every_100ms() -> None:
    result = measure(tone(2.0, 0.1))
    assert result.block_step == 0.1
    assert len(result.momentary) == 20 - 3  # 400 ms blocks, 100 ms apart
