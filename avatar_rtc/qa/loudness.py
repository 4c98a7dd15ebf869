"""Integrated loudness and true peak, ITU-R BS.1770-4 (as used by EBU R128), fed in chunks.

- K-weighting: a high shelf (+4 dB above ~1.7 kHz, the head) then a high pass (~38 Hz), per
  channel; coefficients from the filters' analogue definition, so any sample rate works (at
  48 kHz they are the standard's table).
- Mean square per 100 ms, summed over channels (weight 1: mono and stereo; surround is out of
  scope). Blocks of 400 ms, 75 % overlap; loudness ``-0.691 + 10 log10(sum)``.
- Gating: blocks above -70 LUFS (absolute), then above their own mean minus 10 LU (relative).
- True peak: 4x oversampling (polyphase FIR), the largest absolute value, in dBTP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal  # type: ignore[import-untyped]

__all__ = ["LoudnessMeter", "LoudnessResult", "k_weighting"]

Samples = npt.NDArray[np.float32]  # (channels, n), float in [-1, 1]

SUBBLOCK = 0.1  # seconds; a gating block is 4 of them (400 ms, 75 % overlap)
BLOCK_SUBBLOCKS = 4
ABSOLUTE_GATE = -70.0  # LUFS
RELATIVE_GATE = -10.0  # LU
OVERSAMPLE = 4
_PEAK_CHUNK = 0.5  # seconds of audio per oversampling call
_PEAK_OVERLAP = 32  # input samples carried over (> the interpolation filter's half length)


@dataclass(frozen=True, slots=True)
class LoudnessResult:
    integrated_lufs: float | None  # None: nothing above the absolute gate
    true_peak_dbtp: float | None  # None: no audio, or digital silence
    momentary: npt.NDArray[np.float64]  # loudness of each 400 ms block, LUFS (-inf: silent)
    block_step: float  # seconds between two ``momentary`` values


def k_weighting(rate: float) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """The two biquads ``(b, a)`` of the K-weighting filter at ``rate`` Hz."""
    # Stage 1: high shelf (BS.1770-4 Table 1 at 48 kHz), from its analogue prototype.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = np.array([vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k]) / a0
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    # Stage 2: high pass (RLB weighting, Table 2).
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


class LoudnessMeter:
    """Feed consecutive ``(channels, n)`` float chunks; :meth:`result` at any time."""

    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._filters = k_weighting(rate)
        self._state = [np.zeros((channels, 2)) for _ in self._filters]
        self._subblock = round(SUBBLOCK * rate)
        self._pending = np.zeros(0)  # K-weighted squares summed over channels, < 1 sub-block
        self._energies: list[float] = []  # mean square (channel sum) per 100 ms
        self._peak_buffer: list[Samples] = []
        self._peak_buffered = 0
        self._peak_tail = np.zeros((channels, 0), dtype=np.float32)
        self._peak = 0.0

    def feed(self, samples: Samples) -> None:
        if samples.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {samples.shape[0]}")
        if samples.shape[1] == 0:
            return
        x = samples.astype(np.float64)
        for i, (b, a) in enumerate(self._filters):
            x, self._state[i] = signal.lfilter(b, a, x, axis=1, zi=self._state[i])
        squares = np.concatenate([self._pending, np.sum(x * x, axis=0)])
        whole = len(squares) // self._subblock
        if whole:
            used = whole * self._subblock
            means = squares[:used].reshape(whole, self._subblock).mean(axis=1)
            self._energies.extend(means.tolist())
            squares = squares[used:]
        self._pending = squares
        self._peak_buffer.append(samples)
        self._peak_buffered += samples.shape[1]
        if self._peak_buffered >= _PEAK_CHUNK * self.rate:
            self._flush_peak()

    def _flush_peak(self) -> None:
        if not self._peak_buffer:
            return
        chunk = np.concatenate(self._peak_buffer, axis=1)
        self._peak_buffer.clear()
        self._peak_buffered = 0
        self._peak = max(self._peak, float(np.max(np.abs(chunk))))
        x = np.concatenate([self._peak_tail, chunk], axis=1)
        up = signal.resample_poly(x.astype(np.float64), OVERSAMPLE, 1, axis=1)
        # Outputs near the carried-over start are distorted by the filter's zero padding (they
        # were measured with the previous chunk); the ones near the end are measured again with
        # the next chunk, and a max does not mind seeing a value twice.
        skip = min(self._peak_tail.shape[1], _PEAK_OVERLAP // 2) * OVERSAMPLE
        if up.shape[1] > skip:
            self._peak = max(self._peak, float(np.max(np.abs(up[:, skip:]))))
        self._peak_tail = x[:, -_PEAK_OVERLAP:]

    def result(self) -> LoudnessResult:
        self._flush_peak()
        energies = np.asarray(self._energies, dtype=np.float64)
        n = len(energies) - BLOCK_SUBBLOCKS + 1
        if n <= 0:
            momentary = np.zeros(0)
        else:
            kernel = np.ones(BLOCK_SUBBLOCKS) / BLOCK_SUBBLOCKS
            blocks = np.convolve(energies, kernel, mode="valid")
            with np.errstate(divide="ignore"):
                momentary = -0.691 + 10.0 * np.log10(blocks)
        return LoudnessResult(
            integrated_lufs=_gated(momentary),
            true_peak_dbtp=20.0 * math.log10(self._peak) if self._peak > 0 else None,
            momentary=momentary,
            block_step=SUBBLOCK,
        )


def _gated(momentary: npt.NDArray[np.float64]) -> float | None:
    above = momentary[momentary > ABSOLUTE_GATE]
    if above.size == 0:
        return None
    energy = 10.0 ** ((above + 0.691) / 10.0)
    relative = -0.691 + 10.0 * math.log10(float(np.mean(energy))) + RELATIVE_GATE
    kept = energy[above > relative]
    return -0.691 + 10.0 * math.log10(float(np.mean(kept)))
