"""What the avatar did and when: per-turn events and a ring of sent frames, for tests/benchmarks.

Media times are seconds on the session's media clock (audio sample count / 48000); an audio
event is at the time a receiver *hears* it (its frame's RTP time plus the Opus codec delay, see
``AvatarMedia``), a video event at its frame's time. When a viewer is connected, the event is
completed with the moment the frame that carried it was handed to the network (monotonic and
wall clock) and its RTP timestamp as sent to that viewer. An event on a frame that was never
sent (an injected fault withheld it) gets the RTP timestamp that frame would have had (from the
next frame sent) and no send time.

Injected faults (:mod:`.media_faults`) are logged here as truth: ``fault_set`` when the settings
are armed (``fault``: ``av_offset_ms``, ``speech_delay_ms``, ``video_packet_loss``, with its
``value``); ``fault_start`` / ``fault_end`` on the first frame inside / after a fault window
(``fault``: the window's name), and around the silence a speech delay puts before a turn.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal[
    "queued",  # say_text/say_audio accepted
    "turn_start",  # first sample of the turn heard
    "audio_onset",  # first 20 ms audio frame of the turn above the onset level
    "mouth_open",  # first video frame of the turn with the mouth visibly open
    "turn_end",  # last sample of the turn heard
    "interrupted",  # interrupt() stopped the turn
    "fault_set",  # a fault setting was armed (turn_id "")
    "fault_start",  # first frame (or sample) of an injected fault
    "fault_end",  # first frame (or sample) after it
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
    fault: str | None = None  # fault events: which fault (a MediaFaults field name)
    value: float | None = None  # its setting (ms, fraction) or, for an fps drop, the fps


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
        fault: str | None = None,
        value: float | None = None,
    ) -> TimelineEvent:
        event = TimelineEvent(
            kind, turn_id, media_time, time.monotonic(), frame_kind, pts, fault=fault, value=value
        )
        self.events.append(event)
        if await_send and frame_kind is not None and pts is not None:
            self._pending[frame_kind].append(event)
        return event

    def frame_sent(self, kind: MediaKind, pts: int, rtp_timestamp: int, clock_rate: int) -> None:
        frame = SentFrame(kind, pts, pts / clock_rate, rtp_timestamp, time.monotonic(), time.time())
        self.frames.append(frame)
        pending = self._pending[kind]
        while pending and (pending[0].pts or 0) <= pts:  # only events with a pts wait here
            event = pending.popleft()
            event_pts = event.pts or 0
            # One RTP clock per stream: a frame never sent is where it would have been.
            event.rtp_timestamp = (rtp_timestamp - (pts - event_pts)) & 0xFFFFFFFF
            if event_pts == pts:
                event.sent_monotonic = frame.monotonic
                event.sent_wall = frame.wall
        if self.on_frame_sent is not None:
            self.on_frame_sent(frame)

    def drop_pending(self) -> None:
        """Forget events waiting for a send (no viewer any more)."""
        for pending in self._pending.values():
            pending.clear()
