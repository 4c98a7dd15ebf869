"""Fixtures of the Control API tests: an emulator over loopback HTTP, clients, audio files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest

from avatar_rtc.api import ControlClient, RetryPolicy
from avatar_rtc.emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID, Emulator

AVATAR_ID = DEFAULT_VISUAL_ID
VOICE_ID = DEFAULT_VOICE_ID

# Retries fast enough for tests; the math itself is covered in test_retry.py.
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    # No synthetic avatar: these tests are about the Control API, not media.
    async with Emulator(media_enabled=False) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[ControlClient]:
    async with ControlClient(emu.api_url, emu.ks, retry=FAST_RETRY, timeout=5.0) as control:
        yield control


def write_tone(path: Path, seconds: float, sample_rate: int, codec: str) -> None:
    """Write a mono 440 Hz tone of ``seconds`` with PyAV (format from the file suffix)."""
    samples = int(seconds * sample_rate)
    t = np.arange(samples) / sample_rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    with av.open(str(path), mode="w") as container:
        stream = cast(av.AudioStream, container.add_stream(codec, rate=sample_rate))
        stream.layout = "mono"
        frame_size = stream.codec_context.frame_size or 1024  # 0 for PCM: any size
        for start in range(0, samples, frame_size):
            chunk = pcm[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="session")
def wav_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    write_tone(path, 1.5, 16000, "pcm_s16le")
    return path


@pytest.fixture(scope="session")
def mp3_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.mp3"
    write_tone(path, 2.0, 44100, "libmp3lame")
    return path


@pytest.fixture(scope="session")
def wav_bytes(wav_file: Path) -> bytes:
    return wav_file.read_bytes()


@pytest.fixture(scope="session")
def mp3_bytes(mp3_file: Path) -> bytes:
    return mp3_file.read_bytes()
