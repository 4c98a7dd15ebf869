"""Cut audio fed in chunks of any size into fixed hops (10 ms by default), in order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

__all__ = ["HOP", "HopCutter", "Samples"]

Samples = npt.NDArray[np.float32]  # (channels, n), float in [-1, 1]

HOP = 0.010  # seconds


class HopCutter:
    """Yields ``(start_time, hop)`` for every whole hop; the time is counted in samples from
    the first chunk's time (the audio is taken as contiguous, as a decoder or the session's
    rechunker delivers it)."""

    def __init__(self, rate: int, hop: float = HOP) -> None:
        self.rate = rate
        self.size = round(hop * rate)
        self.hop = self.size / rate
        self.start: float | None = None
        self.count = 0  # hops cut so far
        self._pending: Samples | None = None

    def cut(self, samples: Samples, t: float) -> Iterator[tuple[float, Samples]]:
        if self.start is None:
            self.start = t
        data = samples if self._pending is None else np.concatenate([self._pending, samples], 1)
        whole = data.shape[1] // self.size
        for i in range(whole):
            yield self.start + self.count * self.hop, data[:, i * self.size : (i + 1) * self.size]
            self.count += 1
        self._pending = data[:, whole * self.size :]


def mean_square(hop: Samples) -> float:
    """Mean square over all channels and samples."""
    return float(np.mean(np.square(hop, dtype=np.float64))) if hop.size else 0.0
