"""What the avatar did and when: per-turn events and a ring of sent frames, for tests/benchmarks.

Media times are seconds on the session's media clock (audio sample count / 48000). When a
viewer is connected, the event is completed with the moment the frame that carried it was handed
to the network (monotonic and wall clock) and its RTP timestamp as sent to that viewer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal[
    "queued",  # say_text/say_audio accepted
    "turn_start",  # first sample of the turn played
    "audio_onset",  # first 20 ms audio frame of the turn above the onset level
    "mouth_open",  # first video frame of the turn with the mouth visibly open
    "turn_end",  # last sample of the turn played
    "interrupted",  # interrupt() stopped the turn
]
MediaKind = Literal["audio", "video"]


@dataclass
class TimelineEvent:
    kind: EventKind
    turn_id: str
    media_time: float
    monotonic: float  # when the event was produced (time.monotonic())
    # Filled when the audio/video frame that carried the event is sent (None without viewer).
    frame_kind: MediaKind | None = None
    pts: int | None = None  # in the frame kind's RTP clock (48 kHz audio, 90 kHz video)
    rtp_timestamp: int | None = None
    sent_monotonic: float | None = None
    sent_wall: float | None = None


@dataclass(frozen=True)
class SentFrame:
    kind: MediaKind
    pts: int
    media_time: float
    rtp_timestamp: int
    monotonic: float
    wall: float


class Timeline:
    def __init__(self, max_events: int = 10_000, max_frames: int = 512) -> None:
        self.events: deque[TimelineEvent] = deque(maxlen=max_events)
        self.frames: deque[SentFrame] = deque(maxlen=max_frames)
        self.on_frame_sent: Callable[[SentFrame], None] | None = None
        self._pending: dict[MediaKind, deque[TimelineEvent]] = {"audio": deque(), "video": deque()}

    def add(
        self,
        kind: EventKind,
        turn_id: str,
        media_time: float,
        *,
        frame_kind: MediaKind | None = None,
        pts: int | None = None,
        await_send: bool = False,
    ) -> TimelineEvent:
        event = TimelineEvent(kind, turn_id, media_time, time.monotonic(), frame_kind, pts)
        self.events.append(event)
        if await_send and frame_kind is not None and pts is not None:
            self._pending[frame_kind].append(event)
        return event

    def frame_sent(self, kind: MediaKind, pts: int, rtp_timestamp: int, clock_rate: int) -> None:
        frame = SentFrame(kind, pts, pts / clock_rate, rtp_timestamp, time.monotonic(), time.time())
        self.frames.append(frame)
        pending = self._pending[kind]
        while pending and pending[0].pts is not None and pending[0].pts <= pts:
            event = pending.popleft()
            if event.pts == pts:
                event.rtp_timestamp = rtp_timestamp
                event.sent_monotonic = frame.monotonic
                event.sent_wall = frame.wall
        if self.on_frame_sent is not None:
            self.on_frame_sent(frame)

    def drop_pending(self) -> None:
        """Forget events waiting for a send (no viewer any more)."""
        for pending in self._pending.values():
            pending.clear()
