"""SpeechPlayer: queued speech segments played out in fixed-size chunks, silence when idle.

Each ``say_text`` / ``say_audio`` call becomes one segment. Non-final chunks of a turn
(``is_final=False``) are separate segments of the same turn that play back-to-back as they
arrive; the turn ends when the queue runs dry or the next segment belongs to another turn.
``lead_in`` samples of silence play before every turn (the injected speech delay); the turn
is due (``turn_due``) when they begin and starts (``turn_start``) with its first sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from avatar_rtc.emulator.media.envelope import Samples


@dataclass(frozen=True)
class Segment:
    turn_id: str
    pcm: Samples
    is_final: bool = True


@dataclass(frozen=True)
class PlayerEvent:
    kind: Literal["turn_due", "turn_start", "turn_end"]
    turn_id: str
    # Offset of the event inside the chunk, in samples.
    offset: int


class SpeechPlayer:
    def __init__(self) -> None:
        self._queue: deque[Segment] = deque()
        self._current: Segment | None = None
        self._pos = 0
        self._turn: str | None = None
        self._gap = 0  # samples of lead-in silence left before the current turn starts
        self.lead_in = 0

    @property
    def speaking(self) -> bool:
        return self._current is not None or bool(self._queue)

    @property
    def current_turn(self) -> str | None:
        return self._turn

    def enqueue(self, segment: Segment) -> None:
        self._queue.append(segment)

    def clear(self) -> str | None:
        """Drop everything (interrupt); returns the turn that was playing, if any."""
        turn = self._turn
        self._queue.clear()
        self._current = None
        self._pos = 0
        self._turn = None
        self._gap = 0
        return turn

    def next_chunk(self, n: int) -> tuple[Samples, list[PlayerEvent]]:
        """The next ``n`` samples (zeros when idle) and the turn boundaries inside them."""
        out = np.zeros(n, dtype=np.float32)
        events: list[PlayerEvent] = []
        filled = 0
        while filled < n:
            if self._current is None:
                if not self._queue:
                    break
                seg = self._queue.popleft()
                if seg.turn_id != self._turn:
                    if self._turn is not None:
                        events.append(PlayerEvent("turn_end", self._turn, filled))
                    self._turn = seg.turn_id
                    self._gap = self.lead_in
                    if self._gap:
                        events.append(PlayerEvent("turn_due", seg.turn_id, filled))
                    else:
                        events.append(PlayerEvent("turn_start", seg.turn_id, filled))
                self._current, self._pos = seg, 0
            if self._gap:
                silent = min(n - filled, self._gap)
                filled += silent  # ``out`` is zeros already
                self._gap -= silent
                if self._gap:
                    continue
                events.append(PlayerEvent("turn_start", self._current.turn_id, filled))
            take = min(n - filled, self._current.pcm.size - self._pos)
            out[filled : filled + take] = self._current.pcm[self._pos : self._pos + take]
            filled += take
            self._pos += take
            if self._pos >= self._current.pcm.size:
                self._current = None
        if self._current is None and not self._queue and self._turn is not None:
            events.append(PlayerEvent("turn_end", self._turn, filled))
            self._turn = None
        return out, events
