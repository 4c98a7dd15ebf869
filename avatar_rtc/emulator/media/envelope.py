"""Speech level to mouth opening: :func:`opening_for` (no smoothing: what the avatar uses, on
a window centred on each frame's time, so the mouth has no lag); :class:`Envelope` smooths it
with a fast attack and a slow release (looks nicer, but lags the sound by tens of ms)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]

SILENCE_DB = -45.0  # at or below this level the mouth is closed
FULL_DB = -12.0  # at or above this level the mouth is fully open


def rms_dbfs(samples: Samples) -> float:
    """RMS level of float samples in [-1, 1], in dBFS (-120 for digital silence)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


def opening_for(level_db: float) -> float:
    """Mouth opening 0..1 for a speech level in dBFS."""
    return min(max((level_db - SILENCE_DB) / (FULL_DB - SILENCE_DB), 0.0), 1.0)


class Envelope:
    """Fast attack, slower release: the mouth snaps open on a syllable and closes smoothly."""

    def __init__(self, attack: float = 0.6, release: float = 0.3) -> None:
        self.attack = attack
        self.release = release
        self.value = 0.0

    def update(self, level_db: float) -> float:
        """Feed the level of the next chunk; returns the smoothed opening 0..1."""
        target = opening_for(level_db)
        k = self.attack if target > self.value else self.release
        self.value += k * (target - self.value)
        if self.value < 0.01:
            self.value = 0.0
        return self.value

    def reset(self) -> None:
        self.value = 0.0
