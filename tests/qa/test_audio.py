"""AudioAnalyser on synthetic speech-like audio: silences, speech segments, dropouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar_rtc.qa.audio import AudioAnalyser, AudioResult

RATE = 48_000
SYLLABLE = 0.2  # seconds; loudest in the middle


def voice(seconds: float) -> np.ndarray:
    """A 150 Hz buzz whose loudness rises and falls once per syllable (peak -14 dBFS)."""
    t = np.arange(round(seconds * RATE)) / RATE
    buzz = sum(np.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * math.pi * t / SYLLABLE))
    return (0.2 * buzz * envelope / 2).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.float32)


def analyse(mono: np.ndarray, chunk: int = 960) -> AudioResult:
    analyser = AudioAnalyser(RATE, 2)
    stereo = np.stack([mono, mono])
    for i in range(0, stereo.shape[1], chunk):
        analyser.feed(stereo[:, i : i + chunk], 500.0 + i / RATE)
    return analyser.result()


def test_silences_of_at_least_300ms_are_reported() -> None:
    pcm = np.concatenate([voice(1.0), silence(0.5), voice(1.0), silence(0.2), voice(1.0)])
    r = analyse(pcm)
    assert len(r.silences) == 1
    assert r.silences[0].start - 500.0 == pytest.approx(1.0, abs=0.015)
    assert r.silences[0].duration == pytest.approx(0.5, abs=0.03)


def test_speech_segments_bridge_short_pauses_only() -> None:
    pcm = np.concatenate([silence(0.5), voice(1.0), silence(0.2), voice(1.0), silence(1.0)])
    pcm = np.concatenate([pcm, voice(1.0), silence(0.5)])
    r = analyse(pcm)
    spans = [(s.start - 500.0, s.end - 500.0) for s in r.speech]
    assert len(spans) == 2
    assert spans[0] == pytest.approx((0.5, 2.7), abs=0.03)
    assert spans[1] == pytest.approx((3.7, 4.7), abs=0.03)


def test_a_600ms_cut_inside_speech_is_a_dropout() -> None:
    pcm = voice(5.0)
    a = round(2.1 * RATE)  # the middle of a syllable: loud on both sides of the cut
    pcm[a : a + round(0.6 * RATE)] = 0.0
    r = analyse(pcm)
    assert len(r.dropouts) == 1
    assert r.dropouts[0].start - 500.0 == pytest.approx(2.1, abs=0.015)
    assert r.dropouts[0].duration == pytest.approx(0.6, abs=0.03)
    assert r.dropout_check == "level"


def test_a_cut_is_found_where_it_is_under_the_decoder_tail() -> None:
    # After a cut a codec rings on: -45 dBFS falling 1.5 dB per 10 ms, above the silence
    # threshold for 30 ms. The dropout still starts at the cut.
    pcm = voice(5.0)
    a, n = round(2.1 * RATE), round(0.6 * RATE)
    t = np.arange(n) / RATE
    tail = 10 ** ((-45 - 150 * t) / 20) * np.sqrt(2) * np.sin(2 * math.pi * 300 * t)
    pcm[a : a + n] = tail.astype(np.float32)
    r = analyse(pcm)
    assert len(r.dropouts) == 1
    assert r.dropouts[0].start - 500.0 == pytest.approx(2.1, abs=0.015)
    assert r.dropouts[0].duration == pytest.approx(0.6, abs=0.03)


def test_a_cut_whose_step_spans_two_hops_is_a_dropout() -> None:
    # Opus decodes a cut with a short tail: the first 10 ms after it are only ~16 dB down,
    # the 20 dB step spans two hops. The dropout still starts at the cut.
    pcm = voice(5.0)
    a, n = round(2.1 * RATE), round(0.6 * RATE)
    ring = round(0.01 * RATE)
    pcm[a + ring : a + n] = 0.0
    pcm[a : a + ring] *= np.float32(10 ** (-16 / 20))
    r = analyse(pcm)
    assert len(r.dropouts) == 1
    assert r.dropouts[0].start - 500.0 == pytest.approx(2.1, abs=0.015)
    assert r.dropouts[0].duration == pytest.approx(0.6, abs=0.03)


def test_a_pause_the_voice_fades_into_is_no_dropout() -> None:
    before = voice(2.0)  # ends at the quiet point between two syllables
    pcm = np.concatenate([before, silence(0.6), voice(2.0)])
    r = analyse(pcm)
    assert r.dropouts == []
    assert len(r.silences) == 1


def test_a_stop_consonant_length_cut_is_no_dropout() -> None:
    pcm = voice(5.0)
    a = round(2.1 * RATE)
    pcm[a : a + round(0.05 * RATE)] = 0.0
    assert analyse(pcm).dropouts == []


def test_levels_every_10ms_and_loudness() -> None:
    r = analyse(voice(2.0))
    assert r.hop == 0.01
    assert len(r.levels_db) == 200
    assert r.loudness.integrated_lufs is not None
    assert -30.0 < r.loudness.integrated_lufs < -10.0
    assert r.duration == pytest.approx(2.0)
