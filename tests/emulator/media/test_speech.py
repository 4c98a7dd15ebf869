"""Speech sources: built-in synthesizer, espeak-ng, decoded uploads, the player and envelope."""

from __future__ import annotations

import io
import wave

import av
import numpy as np
import pytest

from avatar_rtc.emulator.media import AudioDecodeError, decode_audio
from avatar_rtc.emulator.media.envelope import Envelope, rms_dbfs
from avatar_rtc.emulator.media.speech import Segment, SpeechPlayer
from avatar_rtc.emulator.media.tts import BuiltinSynthesizer, EspeakSynthesizer, make_synthesizer
from tests.support import require_tool


def _levels(pcm: np.ndarray) -> list[float]:
    return [rms_dbfs(pcm[i : i + 960]) for i in range(0, pcm.size - 960, 960)]


async def test_builtin_synthesizer_is_deterministic_speech_like() -> None:
    synth = BuiltinSynthesizer()
    a = await synth.synthesize("Hello there. How are you?")
    b = await synth.synthesize("Hello there. How are you?")
    assert np.array_equal(a, b)
    assert 1.0 < a.size / 48000 < 4.0
    levels = _levels(a)
    # Syllables are loud, the pauses between them silent.
    assert max(levels) > -25
    assert sum(1 for lv in levels if lv < -60) > 5
    assert np.abs(a).max() <= 0.51


async def test_espeak_synthesizer() -> None:
    path = require_tool("espeak-ng")
    pcm = await EspeakSynthesizer(path).synthesize("Hello there, how are you?")
    assert 0.8 < pcm.size / 48000 < 5.0
    assert max(_levels(pcm)) > -25
    assert make_synthesizer("auto").name == "espeak-ng"
    assert make_synthesizer("builtin").name == "builtin"


def _wav(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _mp3(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (pcm * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("make", [_wav, _mp3])
def test_decode_audio_resamples_to_48k(make: object) -> None:
    rate = 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    pcm = decode_audio(make(tone, rate))  # type: ignore[operator]
    assert pcm.dtype == np.float32
    assert pcm.size / 48000 == pytest.approx(1.0, abs=0.08)
    assert rms_dbfs(pcm[4800:-4800]) == pytest.approx(-9.0, abs=1.5)


def test_decode_audio_rejects_garbage() -> None:
    with pytest.raises(AudioDecodeError):
        decode_audio(b"RIFFxxxx not audio")


def test_player_plays_in_order_then_silence() -> None:
    player = SpeechPlayer()
    player.enqueue(Segment("a", np.full(1500, 0.1, dtype=np.float32), is_final=False))
    player.enqueue(Segment("a", np.full(500, 0.2, dtype=np.float32)))
    player.enqueue(Segment("b", np.full(960, 0.3, dtype=np.float32)))
    chunk, events = player.next_chunk(960)
    assert [(e.kind, e.turn_id) for e in events] == [("turn_start", "a")]
    chunk, events = player.next_chunk(960)
    # 540 samples of a/1, 500 of... a's second chunk continues the same turn (no new start).
    assert chunk[0] == pytest.approx(0.1) and chunk[540] == pytest.approx(0.2)
    assert [(e.kind, e.turn_id) for e in events] == []
    chunk, events = player.next_chunk(960)
    assert [(e.kind, e.turn_id) for e in events] == [("turn_end", "a"), ("turn_start", "b")]
    player.next_chunk(960)
    assert not player.speaking
    chunk, events = player.next_chunk(960)
    assert not chunk.any() and not events
    player.enqueue(Segment("c", np.ones(9600, dtype=np.float32)))
    player.next_chunk(960)
    assert player.clear() == "c"
    assert not player.speaking


def test_envelope_follows_level() -> None:
    env = Envelope()
    assert env.update(-120) == 0.0
    for _ in range(10):
        env.update(-15)
    assert env.value > 0.8
    for _ in range(30):
        env.update(-120)
    assert env.value == 0.0
