"""audio_duration: measured by decoding files written with PyAV."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_rtc.api import audio_duration, guess_audio_type


def test_wav_duration_is_exact(wav_file: Path) -> None:
    assert audio_duration(wav_file) == pytest.approx(1.5, abs=1e-6)


def test_mp3_duration_within_a_frame(mp3_file: Path) -> None:
    # MP3 adds encoder delay/padding of at most about two 1152-sample frames.
    assert audio_duration(str(mp3_file)) == pytest.approx(2.0, abs=0.06)


def test_duration_from_bytes(wav_file: Path) -> None:
    assert audio_duration(wav_file.read_bytes()) == pytest.approx(1.5, abs=1e-6)


def test_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not readable audio"):
        audio_duration(b"definitely not audio" * 50)


def test_missing_file_is_not_hidden(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        audio_duration(tmp_path / "missing.wav")


def test_content_type_from_name_then_bytes(wav_file: Path, mp3_file: Path) -> None:
    assert guess_audio_type("x.mp3", b"") == "audio/mpeg"
    assert guess_audio_type("x.WAV", b"") == "audio/wav"
    assert guess_audio_type("audio", wav_file.read_bytes()) == "audio/wav"
    assert guess_audio_type("audio", mp3_file.read_bytes()) == "audio/mpeg"
    assert guess_audio_type("audio", b"\x00\x01\x02") == "application/octet-stream"
