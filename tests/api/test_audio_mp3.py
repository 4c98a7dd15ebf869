"""to_mp3: any audio PyAV reads, as the mono 44.1 kHz MP3 say-audio sends."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from avatar_rtc.api import audio_duration
from avatar_rtc.api.audio_mp3 import MP3_SAMPLE_RATE, is_mp3, to_mp3


def _encoded(container_format: str, codec: str, frame: av.AudioFrame) -> bytes:
    """``frame`` encoded with ``codec`` in a ``container_format`` file's bytes."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=frame.sample_rate, layout=frame.layout.name)
        assert isinstance(stream, av.AudioStream)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _ogg_opus_stereo(seconds: float) -> bytes:
    t = np.arange(int(seconds * 48000)) / 48000
    left = (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)
    pcm = np.stack([left, left]).T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
    frame.sample_rate = 48000
    return _encoded("ogg", "libopus", frame)


def test_wav_becomes_mono_mp3_of_the_same_length(wav_bytes: bytes) -> None:
    mp3, seconds = to_mp3(wav_bytes)
    assert seconds == pytest.approx(1.5)
    assert audio_duration(mp3) == pytest.approx(1.5, abs=0.001)  # encoder padding trimmed
    with av.open(io.BytesIO(mp3), mode="r") as container:
        stream = container.streams.audio[0]
        assert (stream.rate, stream.layout.name) == (MP3_SAMPLE_RATE, "mono")
        pcm = np.concatenate([f.to_ndarray().ravel() for f in container.decode(stream)])
    assert np.abs(pcm).max() > 0.1  # the tone, not silence


def test_stereo_ogg_opus_becomes_mono_mp3() -> None:
    mp3, seconds = to_mp3(_ogg_opus_stereo(2.0))
    assert seconds == pytest.approx(2.0, abs=0.001)
    assert audio_duration(mp3) == pytest.approx(2.0, abs=0.001)


def _adts_aac(seconds: float) -> bytes:
    silence = np.zeros((1, int(seconds * 44100)), np.float32)
    frame = av.AudioFrame.from_ndarray(silence, format="fltp", layout="mono")
    frame.sample_rate = 44100
    return _encoded("adts", "aac", frame)


def test_mp3_is_told_by_its_content(wav_bytes: bytes, mp3_bytes: bytes) -> None:
    assert is_mp3(mp3_bytes)
    assert not is_mp3(wav_bytes)
    aac = _adts_aac(1.0)
    assert aac[0] == 0xFF and aac[1] & 0xE0 == 0xE0  # starts like an MPEG audio frame
    assert not is_mp3(aac)


@pytest.mark.parametrize("data", [b"", b"not a sound at all" * 20])
def test_what_is_not_audio_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not readable audio"):
        to_mp3(data)
    with pytest.raises(ValueError, match="not readable audio"):
        is_mp3(data)
