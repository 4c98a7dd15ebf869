"""Text to speech: espeak-ng when installed, else a small deterministic built-in synthesizer.

Both return mono float32 PCM at 48 kHz. The built-in one is no speech at all, just a vowel-like
tone per syllable with pauses between syllables, words and sentences: enough to drive the mouth
and the audio level, cheap and reproducible (no randomness that is not seeded by the text).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shutil
import zlib
from typing import Protocol

import numpy as np

from avatar_rtc.emulator.media.audio_decode import SAMPLE_RATE, decode_audio
from avatar_rtc.emulator.media.envelope import Samples
from avatar_rtc.emulator.media.options import TtsMode

logger = logging.getLogger(__name__)

# (F1, F2) in Hz of the vowel a syllable's letter stands for.
_FORMANTS: dict[str, tuple[float, float]] = {
    "a": (730.0, 1090.0),
    "e": (530.0, 1840.0),
    "i": (270.0, 2290.0),
    "o": (570.0, 840.0),
    "u": (300.0, 870.0),
    "y": (400.0, 1900.0),
}
_SYLLABLE = 0.17
_SYLLABLE_GAP = 0.045
_WORD_GAP = 0.11
_SENTENCE_GAP = 0.32


class Synthesizer(Protocol):
    name: str

    async def synthesize(self, text: str) -> Samples: ...


class BuiltinSynthesizer:
    """Deterministic vowel-tone "speech" (see module docstring)."""

    name = "builtin"

    async def synthesize(self, text: str) -> Samples:
        # A few ms of numpy for a sentence; off the loop anyway since texts can be long.
        return await asyncio.to_thread(self.render, text)

    def render(self, text: str) -> Samples:
        rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
        parts: list[Samples] = []
        tokens = re.findall(r"[^\W\d_]+|\d+|[.!?;:]", text.lower())
        index = 0
        for token in tokens:
            if token in ".!?;:":
                parts.append(_silence(_SENTENCE_GAP))
                continue
            groups = re.findall(r"[aeiouy]+", token) or ["a" if not token.isdigit() else "i"]
            for n, group in enumerate(groups[:8]):
                f0 = 125.0 + 15.0 * math.sin(index * 0.7)  # gentle intonation
                parts.append(
                    _syllable(group[0], f0, consonant=n == 0 or rng.random() < 0.5, rng=rng)
                )
                parts.append(_silence(_SYLLABLE_GAP))
                index += 1
            parts.append(_silence(_WORD_GAP))
        if not parts:
            return _silence(0.1)
        pcm = np.concatenate(parts)
        peak = float(np.max(np.abs(pcm))) or 1.0
        return (pcm * (0.5 / peak)).astype(np.float32)


def _silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def _syllable(vowel: str, f0: float, *, consonant: bool, rng: np.random.Generator) -> Samples:
    n = round(_SYLLABLE * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    f1, f2 = _FORMANTS.get(vowel, _FORMANTS["a"])
    out = np.zeros(n, dtype=np.float32)
    for k in range(1, int(4000 / f0)):
        fk = k * f0
        # Harmonics shaped by two formant resonances and a spectral tilt.
        gain = (
            1.0 / (1.0 + ((fk - f1) / 90.0) ** 2) + 0.6 / (1.0 + ((fk - f2) / 120.0) ** 2) + 0.02
        ) / k**0.5
        out += np.float32(gain) * np.sin(np.float32(2 * math.pi * fk) * t)
    attack = min(round(0.02 * SAMPLE_RATE), n)
    release = min(round(0.05 * SAMPLE_RATE), n)
    env = np.ones(n, dtype=np.float32)
    env[:attack] = np.linspace(0.0, 1.0, attack, dtype=np.float32)
    env[n - release :] = np.linspace(1.0, 0.0, release, dtype=np.float32)
    out *= env
    if consonant:
        burst = round(0.025 * SAMPLE_RATE)
        noise = rng.standard_normal(burst).astype(np.float32) * 0.15
        out = np.concatenate([noise * np.linspace(1.0, 0.2, burst, dtype=np.float32), out])
    return out


class EspeakSynthesizer:
    """``espeak-ng --stdout`` (WAV on stdout), decoded and resampled with PyAV."""

    name = "espeak-ng"

    def __init__(
        self, executable: str = "espeak-ng", voice: str = "en", timeout: float = 20.0
    ) -> None:
        self.executable = executable
        self.voice = voice
        self.timeout = timeout

    async def synthesize(self, text: str) -> Samples:
        # Text goes through stdin so it can never be taken for an option.
        proc = await asyncio.create_subprocess_exec(
            self.executable,
            "--stdout",
            "--stdin",
            "-v",
            self.voice,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            wav, err = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), self.timeout)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0 or not wav:
            detail = err.decode(errors="replace").strip()
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {detail}")
        return await asyncio.to_thread(decode_audio, wav)


class FallbackSynthesizer:
    """espeak-ng, falling back to the built-in synthesizer when a call fails."""

    def __init__(self, primary: Synthesizer, fallback: Synthesizer) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = primary.name

    async def synthesize(self, text: str) -> Samples:
        try:
            return await self.primary.synthesize(text)
        except (OSError, RuntimeError, ValueError, TimeoutError) as exc:
            logger.warning("%s failed (%s); using the built-in synthesizer", self.primary.name, exc)
            return await self.fallback.synthesize(text)


def make_synthesizer(mode: TtsMode = "auto", *, voice: str = "en") -> Synthesizer:
    """``auto``: espeak-ng if on PATH, else built-in. ``espeak-ng`` raises if it is missing."""
    if mode == "builtin":
        return BuiltinSynthesizer()
    path = shutil.which("espeak-ng")
    if path is None:
        if mode == "espeak-ng":
            raise RuntimeError("espeak-ng is not installed")
        logger.info("espeak-ng not found; using the built-in synthesizer")
        return BuiltinSynthesizer()
    return FallbackSynthesizer(EspeakSynthesizer(path, voice=voice), BuiltinSynthesizer())
