"""Emulated sessions and their registry, including idle expiry.

Idle expiry: a session expires ``idle_timeout`` seconds after its creation or its last
**keep-alive**. Other calls (say-text, init-client...) do not refresh it: the docs tie
the timeout to keep-alive only ("send it every 10 seconds to keep the session from timing
out"), and a client that forgets keep-alive should find out against the emulator, not in
production. Ended and expired sessions stay in the registry so later calls get 410.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "EmulatedSession",
    "MediaLike",
    "SayAudioCall",
    "SayTextCall",
    "SessionRegistry",
    "SessionState",
]

logger = logging.getLogger(__name__)


class MediaLike(Protocol):
    """What the emulator needs from a session's synthetic avatar (``emulator.media``)."""

    async def start(self) -> None: ...

    async def say_text(self, text: str, *, turn_id: str, is_final: bool) -> None: ...

    async def say_audio(
        self, audio: bytes, *, duration: float, turn_id: str, filename: str | None
    ) -> None:
        """Queue ``audio``; raises ValueError when it cannot be decoded (-> 400)."""

    def interrupt(self) -> None: ...

    async def close(self) -> None: ...


class SessionState(enum.StrEnum):
    CREATED = "created"  # after create
    READY = "ready"  # after init-client
    ENDED = "ended"  # after end
    EXPIRED = "expired"  # no keep-alive within idle_timeout

    @property
    def is_live(self) -> bool:
        return self in (SessionState.CREATED, SessionState.READY)


@dataclass(frozen=True)
class SayTextCall:
    text: str
    turn_id: str
    is_final: bool


@dataclass(frozen=True)
class SayAudioCall:
    audio: bytes
    duration: float
    turn_id: str
    filename: str | None
    content_type: str | None


@dataclass
class EmulatedSession:
    """One session as the emulator sees it; tests inspect the recorded calls."""

    session_id: str
    visual_id: str
    voice_config: dict[str, Any] | None
    created_at: float
    last_keep_alive: float
    state: SessionState = SessionState.CREATED
    token_id: str = ""
    init_client_calls: int = 0
    say_text_calls: list[SayTextCall] = field(default_factory=list)
    say_audio_calls: list[SayAudioCall] = field(default_factory=list)
    interrupts: int = 0
    keep_alives: int = 0
    media: MediaLike | None = None
    # The TURN object handed out, credential in clear: kept out of repr (test failure output).
    turn: dict[str, str] | None = field(default=None, repr=False)

    @property
    def voice_id(self) -> str | None:
        if self.voice_config is None:
            return None
        value = self.voice_config.get("id")
        return value if isinstance(value, str) else None


class SessionRegistry:
    """All sessions of one emulator, keyed by id; ``clock`` is monotonic seconds."""

    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._sessions: dict[str, EmulatedSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[EmulatedSession]:
        return iter(list(self._sessions.values()))

    def create(self, visual_id: str, voice_config: dict[str, Any] | None) -> EmulatedSession:
        now = self._clock()
        session = EmulatedSession(
            session_id=str(uuid.uuid4()),
            visual_id=visual_id,
            voice_config=voice_config,
            created_at=now,
            last_keep_alive=now,
            token_id=uuid.uuid4().hex,
        )
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str) -> EmulatedSession | None:
        return self._sessions.get(session_id)

    def touch(self, session: EmulatedSession) -> None:
        """Record a keep-alive."""
        session.last_keep_alive = self._clock()
        session.keep_alives += 1

    def due_for_expiry(self) -> list[EmulatedSession]:
        """Mark live sessions idle for ``idle_timeout`` as expired and return them."""
        now = self._clock()
        expired = []
        for session in self._sessions.values():
            if session.state.is_live and now - session.last_keep_alive >= self.idle_timeout:
                session.state = SessionState.EXPIRED
                expired.append(session)
                logger.info(
                    "session %s expired after %.1f s idle",
                    session.session_id,
                    now - session.last_keep_alive,
                )
        return expired

    def live_media(self, session_id: str) -> MediaLike | None:
        session = self._sessions.get(session_id)
        if session is None or not session.state.is_live:
            return None
        return session.media
