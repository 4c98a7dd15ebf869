"""Media faults of known size, injected into what the emulated avatar sends (for QA tests).

Two sorts:

- **settings** that hold until changed: the A/V offset (ms, positive: the sound is sent
  before the picture that goes with it), the speech delay (ms of silence before every turn's
  speech, mouth and sound alike), the video packet loss (fraction of RTP packets dropped).
- **windows** ``(start, length)`` in seconds: freeze by repeated frames (the same picture keeps
  being sent), freeze by withheld frames (no video frame sent), black picture, audio dropout
  (digital silence) or withheld audio (no audio packet sent), fps drop (only ``fps`` frames a
  second are sent).

Time base of a window: ``start`` counts from the **start of the next turn** after arming, i.e.
the media time of that turn's first speech sample as sent (its ``turn_start`` timeline event).
Each window happens once. Video windows act on whole frames (those whose media time falls in
the window), audio windows on samples (dropout) or 20 ms frames (withheld). What happened is
logged as truth on the timeline: a ``fault_start`` event on the first affected frame and a
``fault_end`` event on the first frame after the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Literal

__all__ = [
    "FaultWindow",
    "FpsDrop",
    "MediaFaults",
    "VideoAction",
    "WindowName",
    "parse_window",
]

WindowName = Literal[
    "freeze_repeated", "freeze_withheld", "black", "fps_drop", "audio_dropout", "audio_withheld"
]
VideoAction = Literal["render", "repeat", "withhold", "black"]
MAX_OFFSET_MS = 2000.0  # the speech tape keeps this much history for each side
VIDEO_WINDOWS: tuple[WindowName, ...] = ("freeze_repeated", "freeze_withheld", "black", "fps_drop")


@dataclass(frozen=True)
class FaultWindow:
    """``length`` seconds from ``start`` seconds after the start of the next turn."""

    start: float
    length: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start >= 0):
            raise ValueError(f"a fault window starts at 0 s or later, got {self.start}")
        if not (math.isfinite(self.length) and self.length > 0):
            raise ValueError(f"a fault window lasts more than 0 s, got {self.length}")


@dataclass(frozen=True)
class FpsDrop(FaultWindow):
    """A window during which only ``fps`` frames a second are sent."""

    fps: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"the dropped frame rate must be > 0, got {self.fps}")


@dataclass(frozen=True)
class MediaFaults:
    """What to inject; ``None``/0 is no fault. See the module docstring for the time base."""

    av_offset_ms: float = 0.0
    speech_delay_ms: float = 0.0
    video_packet_loss: float | None = None  # None: keep AvatarMediaOptions.video_packet_loss
    freeze_repeated: FaultWindow | None = None
    freeze_withheld: FaultWindow | None = None
    black: FaultWindow | None = None
    fps_drop: FpsDrop | None = None
    audio_dropout: FaultWindow | None = None
    audio_withheld: FaultWindow | None = None

    def __post_init__(self) -> None:
        if not abs(self.av_offset_ms) <= MAX_OFFSET_MS:
            raise ValueError(f"av_offset_ms must be within ±{MAX_OFFSET_MS:.0f} ms")
        if not 0 <= self.speech_delay_ms <= 60_000:
            raise ValueError("speech_delay_ms must be within 0..60000 ms")
        if self.video_packet_loss is not None and not 0.0 <= self.video_packet_loss < 1.0:
            raise ValueError("video_packet_loss must be within [0, 1)")

    def windows(self) -> Iterator[tuple[WindowName, FaultWindow]]:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, FaultWindow):
                yield f.name, value  # type: ignore[misc]  # the window fields are WindowNames


def parse_window(text: str) -> FaultWindow:
    """``START:LENGTH`` in seconds (``1.0:0.7``); raises ValueError."""
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"expected START:LENGTH in seconds, got {text!r}")
    return FaultWindow(float(parts[0]), float(parts[1]))


def parse_fps_drop(text: str) -> FpsDrop:
    """``START:LENGTH:FPS`` (seconds, seconds, frames a second); raises ValueError."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"expected START:LENGTH:FPS, got {text!r}")
    return FpsDrop(float(parts[0]), float(parts[1]), float(parts[2]))


@dataclass
class ActiveWindow:
    """A window anchored on a turn: absolute media times ``[start, end)``."""

    name: WindowName
    turn_id: str
    start: float
    end: float
    fps: float | None = None
    started: bool = False
    ended: bool = False
    next_slot: int = 0  # fps drop: the next 1/fps slot that may send a frame


@dataclass
class Transition:
    """A window began or ended on the frame being processed (to log on the timeline)."""

    window: ActiveWindow
    kind: Literal["fault_start", "fault_end"]
    at: float  # media time: the frame's, or the exact sample time of a dropout's edge


@dataclass
class FaultPlan:
    """The armed faults of one session: windows wait for the next turn, then run once."""

    faults: MediaFaults = field(default_factory=MediaFaults)
    waiting: list[tuple[WindowName, FaultWindow]] = field(default_factory=list)
    active: list[ActiveWindow] = field(default_factory=list)

    def arm(self, faults: MediaFaults) -> None:
        """Replace the armed faults; windows not started yet are dropped."""
        self.faults = faults
        self.waiting = list(faults.windows())
        self.active = [w for w in self.active if w.started and not w.ended]

    def turn_started(self, turn_id: str, media_time: float) -> None:
        """Anchor the waiting windows on this turn's first speech sample."""
        for name, window in self.waiting:
            start = media_time + window.start
            fps = window.fps if isinstance(window, FpsDrop) else None
            self.active.append(ActiveWindow(name, turn_id, start, start + window.length, fps))
        self.waiting = []

    def video_frame(self, t: float) -> tuple[VideoAction, list[Transition]]:
        """What to do with the video frame of media time ``t`` (every frame, in order)."""
        action: VideoAction = "render"
        changes: list[Transition] = []
        for w in self._video_windows_at(t, changes):
            if w.name == "freeze_withheld":
                action = "withhold"
            elif w.name == "freeze_repeated" and action != "withhold":
                action = "repeat"
            elif w.name == "black" and action == "render":
                action = "black"
            elif w.name == "fps_drop" and action == "render":
                assert w.fps is not None
                slot = math.floor((t - w.start) * w.fps + 1e-6)
                if slot < w.next_slot:
                    action = "withhold"
                else:
                    w.next_slot = slot + 1
        return action, changes

    def audio_frame(self, t0: float, t1: float) -> tuple[bool, list[float], list[Transition]]:
        """For the audio frame ``[t0, t1)``: (withhold it?, dropout cuts inside it as a flat
        list of [start, end) media times, transitions)."""
        withhold = False
        cuts: list[float] = []
        changes: list[Transition] = []
        for w in self.active:
            if w.name == "audio_withheld":  # whole frames: those starting inside the window
                withhold = self._cross_at(w, t0, changes) or withhold
            elif w.name == "audio_dropout" and w.start < t1:  # sample exact
                if not w.started:
                    w.started = True
                    changes.append(Transition(w, "fault_start", w.start))
                if max(w.start, t0) < min(w.end, t1):
                    cuts.extend((max(w.start, t0), min(w.end, t1)))
                if w.end <= t1:
                    w.ended = True
                    changes.append(Transition(w, "fault_end", w.end))
        self.active = [w for w in self.active if not w.ended]
        return withhold, cuts, changes

    def _video_windows_at(self, t: float, changes: list[Transition]) -> list[ActiveWindow]:
        """The video windows that frame time ``t`` is inside (logging transitions)."""
        inside = []
        for w in self.active:
            if w.name in VIDEO_WINDOWS and self._cross_at(w, t, changes):
                inside.append(w)
        self.active = [w for w in self.active if not w.ended]
        return inside

    @staticmethod
    def _cross_at(w: ActiveWindow, t: float, changes: list[Transition]) -> bool:
        eps = 1e-9
        if not w.started and t >= w.start - eps:
            w.started = True
            changes.append(Transition(w, "fault_start", t))
        if w.started and not w.ended and t >= w.end - eps:
            w.ended = True
            changes.append(Transition(w, "fault_end", t))
        return w.started and not w.ended
