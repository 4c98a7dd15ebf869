"""An embedded emulator of the avatar service: Control API, WHEP and a synthetic talking avatar."""

from __future__ import annotations

from .catalog import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID
from .control import PLACEHOLDER_TURN_HOST
from .counters import EmulatorCounters
from .faults import ENDPOINTS, FaultInjector
from .server import Emulator
from .state import EmulatedSession, MediaLike, SayAudioCall, SayTextCall, SessionState

__all__ = [
    "DEFAULT_VISUAL_ID",
    "DEFAULT_VOICE_ID",
    "ENDPOINTS",
    "PLACEHOLDER_TURN_HOST",
    "EmulatedSession",
    "Emulator",
    "EmulatorCounters",
    "FaultInjector",
    "MediaLike",
    "SayAudioCall",
    "SayTextCall",
    "SessionState",
]
