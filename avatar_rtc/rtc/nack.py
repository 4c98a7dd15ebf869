"""NACK bookkeeping with retries (aiortc NACKs a gap once and never again).

Sequence numbers here are *extended* (unwrapped to int). A gap is NACKed at once, then again
every ``retry_interval`` (at least the measured NACK->retransmission round trip) up to
``max_retries`` times, or until the packet arrives or the jitter buffer gives up on it.
At most ``max_missing`` entries are tracked (oldest dropped), so RTCP feedback stays small.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NackTracker"]


@dataclass(slots=True)
class _Missing:
    first_nack: float | None = None
    last_nack: float | None = None
    retries: int = 0


class NackTracker:
    def __init__(
        self,
        *,
        retry_interval: float = 0.02,
        max_retries: int = 10,
        max_missing: int = 256,
        max_gap: int = 1000,
    ) -> None:
        self._retry_interval = retry_interval
        self._max_retries = max_retries
        self._max_missing = max_missing
        self._max_gap = max_gap
        self._highest: int | None = None
        self._missing: dict[int, _Missing] = {}
        self.rtt: float | None = None  # smallest recent NACK -> retransmission delay
        self.recovered = 0

    @property
    def missing_count(self) -> int:
        return len(self._missing)

    def on_packet(self, seq: int, now: float) -> bool:
        """Record a received packet; returns False when the gap is too big to NACK."""
        if self._highest is None:
            self._highest = seq
            return True
        if seq > self._highest:
            gap = seq - self._highest - 1
            if gap > self._max_gap:
                self._missing.clear()
                self._highest = seq
                return False
            for s in range(max(self._highest + 1, seq - self._max_missing), seq):
                self._missing[s] = _Missing()
            self._highest = seq
            if len(self._missing) > self._max_missing:
                for s in sorted(self._missing)[: len(self._missing) - self._max_missing]:
                    del self._missing[s]
        else:
            entry = self._missing.pop(seq, None)
            if entry is not None and entry.first_nack is not None:
                self.recovered += 1
                sample = now - entry.first_nack
                self.rtt = (
                    sample if self.rtt is None else min(sample, 0.9 * self.rtt + 0.1 * sample)
                )
        return True

    def due(self, now: float) -> list[int]:
        """Sequence numbers to (re-)NACK now; entries out of retries are dropped."""
        interval = self._retry_interval
        if self.rtt is not None:
            interval = max(interval, 1.2 * self.rtt)
        out: list[int] = []
        exhausted: list[int] = []
        for seq, m in self._missing.items():
            if m.last_nack is not None and now - m.last_nack < interval:
                continue
            if m.retries >= self._max_retries:
                exhausted.append(seq)
                continue
            if m.first_nack is None:
                m.first_nack = now
            m.last_nack = now
            m.retries += 1
            out.append(seq)
        for seq in exhausted:
            del self._missing[seq]
        return out

    def forget_before(self, seq: int) -> None:
        """Stop asking for packets older than ``seq`` (the jitter buffer gave up on them)."""
        for s in [s for s in self._missing if s < seq]:
            del self._missing[s]

    def reset(self) -> None:
        self._highest = None
        self._missing.clear()
