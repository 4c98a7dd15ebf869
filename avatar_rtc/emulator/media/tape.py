"""SpeechTape: the speech as played, kept for a while and read back at any sample index.

The sound and the mouth read the same tape at two heads: the sound ``Da`` samples behind the
player, the mouth ``Dv`` behind (an A/V offset is ``Dv - Da``), and the mouth over a window
*centred* on its read position (so its opening has no lag of its own).
"""

from __future__ import annotations

import numpy as np

from avatar_rtc.emulator.media.envelope import Samples


class SpeechTape:
    """A ring of the last ``capacity`` samples; sample ``i`` is the ``i``-th ever written."""

    def __init__(self, capacity: int) -> None:
        self._ring = np.zeros(capacity, dtype=np.float32)
        self.end = 0  # index of the next sample to be written

    def write(self, pcm: Samples) -> None:
        cap = len(self._ring)
        total = len(pcm)
        kept = pcm[-cap:]
        at = (self.end + total - len(kept)) % cap
        first = min(len(kept), cap - at)
        self._ring[at : at + first] = kept[:first]
        self._ring[: len(kept) - first] = kept[first:]
        self.end += total

    def read(self, start: int, n: int) -> Samples:
        """Samples ``[start, start + n)``; zeros where nothing (or no longer anything) is kept."""
        out = np.zeros(n, dtype=np.float32)
        cap = len(self._ring)
        lo = max(start, self.end - cap, 0)
        hi = min(start + n, self.end)
        if lo >= hi:
            return out
        at = lo % cap
        first = min(hi - lo, cap - at)  # the kept samples are at most two runs of the ring
        out[lo - start : lo - start + first] = self._ring[at : at + first]
        out[lo - start + first : hi - start] = self._ring[: hi - lo - first]
        return out

    def erase(self) -> None:
        """Forget everything kept (interrupt: nothing already played may still be heard)."""
        self._ring[:] = 0.0
