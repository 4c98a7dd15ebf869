"""Audio packets put back in sequence order, waiting for a reordered packet only while it can
still come.

Opus packets decode one by one, so audio needs no frame assembly, only order: a packet that
arrives after a later one was dropped as late before, and on a jittery path (a relay through
TURN adding 20-100 ms at random) that was a third of the audio, turned into silence.

- In order, a packet is released at once: no latency is added while nothing is missing.
- A packet past a hole is held; the hole is waited for ``wait`` seconds from when it was
  noticed (the first packet past it arrived), then given up: the held packets go, in order,
  and the hole stays a gap (silence downstream). A reordered packet that fills the hole in
  time releases everything it was holding back.
- ``wait`` adapts to the path: it is 1.5 times the longest reordering delay seen lately (how
  long after its hole was noticed a packet came, including one that came too late), between
  ``min_wait`` and ``max_wait``; that peak decays by ``PEAK_DECAY`` seconds a second. A lost
  packet costs the packets after it ``wait`` of latency, never their presentation times (those
  come from RTP timestamps).
- Bounded: a jump of more than ``max_held`` packets is a stream jump (an outage, a sender that
  skipped), not reordering: whatever is held is released and the stream resumes at once.

Sequence numbers are extended (unwrapped) ints. Items are opaque to the buffer.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["AudioReorderBuffer"]

T = TypeVar("T")

MIN_WAIT = 0.04  # seconds: two Opus packets
MAX_WAIT = 0.25
WAIT_FACTOR = 1.5  # the wait over the longest reordering delay seen lately
PEAK_DECAY = 0.01  # seconds of peak lost a second: a minute to forget a 0.6 s spike
MAX_HELD = 25  # packets (0.5 s of Opus at 20 ms): a longer jump is no reordering
_MISSING_KEPT = 64  # holes remembered behind the stream, to measure a too-late packet


class AudioReorderBuffer(Generic[T]):
    """See the module docstring. ``push`` and ``expire`` return the items to release now,
    in sequence order."""

    def __init__(
        self, *, min_wait: float = MIN_WAIT, max_wait: float = MAX_WAIT, max_held: int = MAX_HELD
    ) -> None:
        if not 0 <= min_wait <= max_wait:
            raise ValueError("need 0 <= min_wait <= max_wait")
        self.min_wait = min_wait
        self.max_wait = max_wait
        self.max_held = max_held
        self._next: int | None = None  # the sequence number to release next
        self._held: dict[int, T] = {}
        self._missing: dict[int, float] = {}  # hole -> when it was noticed
        self._peak = 0.0  # the longest reordering delay seen, decaying
        self._peak_at = 0.0
        # counters
        self.reordered = 0  # came after a later packet, released in order
        self.late = 0  # came after its place was given up (or a duplicate): dropped
        self.given_up = 0  # holes given up: gaps left in the audio
        self.jumps = 0  # jumps too long to wait for

    @property
    def waiting(self) -> bool:
        """Packets are held behind a hole (``expire`` has something to do in time)."""
        return bool(self._held)

    def wait(self, now: float) -> float:
        """How long a hole is waited for now, in seconds."""
        return min(self.max_wait, max(self.min_wait, WAIT_FACTOR * self._decayed_peak(now)))

    def push(self, seq: int, item: T, now: float) -> list[T]:
        if self._next is None:
            self._next = seq
        since = self._missing.pop(seq, None)
        if since is not None:
            self._measure(now - since, now)
        if seq < self._next or seq in self._held:
            self.late += 1
            return []
        if since is not None:
            self.reordered += 1
        if seq - self._next > self.max_held:  # not reordering: resume at this packet
            self.jumps += 1
            out = self._drain()
            self._next = seq + 1
            self._missing.clear()
            return [*out, item]
        for hole in range(self._next, seq):
            if hole not in self._held:
                self._missing.setdefault(hole, now)
        self._held[seq] = item
        return self.expire(now)

    def expire(self, now: float) -> list[T]:
        """Release what is in order, giving up holes waited for long enough."""
        out: list[T] = []
        if self._next is None:
            return out
        wait = self.wait(now)
        while self._held:
            while self._next in self._held:
                out.append(self._held.pop(self._next))
                self._next += 1
            if not self._held or now - self._missing.get(self._next, now) < wait:
                break
            first = min(self._held)  # give the hole up
            self.given_up += 1
            self._next = first
        self._forget_old()
        return out

    def flush(self) -> list[T]:
        """Everything held, in order, and a fresh start (a new stream)."""
        out = self._drain()
        self._next = None
        self._missing.clear()
        return out

    def _drain(self) -> list[T]:
        out = [self._held[seq] for seq in sorted(self._held)]
        self._held.clear()
        return out

    def _decayed_peak(self, now: float) -> float:
        return max(0.0, self._peak - PEAK_DECAY * (now - self._peak_at))

    def _measure(self, delay: float, now: float) -> None:
        if delay >= self._decayed_peak(now):
            self._peak, self._peak_at = delay, now

    def _forget_old(self) -> None:
        if len(self._missing) > _MISSING_KEPT + self.max_held and self._next is not None:
            floor = self._next - _MISSING_KEPT
            for hole in [h for h in self._missing if h < floor]:
                del self._missing[hole]
