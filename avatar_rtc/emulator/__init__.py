"""An embedded emulator of the avatar service: Control API, WHEP and a synthetic talking avatar.

Choices where the docs and the live service disagree or are silent:

- create: both ``POST /v1/avatar-session/create`` and ``POST /v1/avatar-session``;
  ``visualConfig.id`` or ``visualConfig.avatarId`` (any non-empty id; 400 without one).
- auth: the scheme word is case-insensitive (``KS``/``ks``, ``Bearer``/``bearer``).
- ``end`` on an ended/expired session: 404 like the live service (docs: 410);
  ``Emulator(ended_end_status=410)`` switches. Other calls on it: 410 ``Session ended``.
- idle expiry counts from create or the last keep-alive only (other calls do not refresh).
- say-text defaults ``turnId`` (docs' JS shape) and ``isFinal`` (true), as the docs' cURL
  example omits them; say-audio defaults ``turnId`` (UUIDv4) but requires ``duration`` > 0
  and an ``audio`` part; undecodable audio is 400 ``Invalid audio file``.
- init-client may be repeated (same media, same ``whepUrl``); without a configured TURN
  server it hands out the unresolvable host ``turn.invalid``: loopback clients must not
  need TURN.
- fault injection happens before auth; ``counters.calls`` counts every request.
"""

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
