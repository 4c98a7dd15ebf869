"""State, timings and statistics of an :class:`~avatar_rtc.session.AvatarSession`.

``SessionStats.to_dict()`` is their JSON form (what ``avatar-rtc probe`` prints), versioned by
:data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .api.keepalive import KeepAliveState
from .media.decoder import DecoderStats
from .media.streams import StreamStats
from .record.stats import RecorderStats
from .rtc.candidate_pair import SelectedPair
from .rtc.receiver import ReceiveStats
from .rtc.reconnect import ReconnectStats

__all__ = [
    "SCHEMA_VERSION",
    "KeepAliveStats",
    "SessionState",
    "SessionStats",
    "SessionTimings",
]

# Of SessionStats.to_dict(): bumped when a key is renamed or removed (not when one is added).
SCHEMA_VERSION = 1


class SessionState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"  # create/init-client, then WHEP + ICE/DTLS
    CONNECTED = "connected"  # media flows
    RECONNECTING = "reconnecting"  # media was lost; getting it back (see ReconnectPolicy)
    DISCONNECTED = "disconnected"  # the media connection or the service session was lost
    CLOSING = "closing"
    ENDED = "ended"  # closed: WHEP resource deleted, service session ended
    FAILED = "failed"  # start() failed (everything it opened was closed again)


@dataclass
class SessionTimings:
    """Durations of the start-up phases in seconds (``None`` until the phase completed).

    - ``session``: create + init-client (``None`` in bare WHEP mode)
    - ``offer_answer``: peer connection, ICE gathering, WHEP POST until the answer
    - ``ice_dtls``: answer until ICE + DTLS connected
    - ``first_keyframe``: connected until the first complete video keyframe arrived
    - ``first_frame``: first keyframe until it was decoded
    - ``total``: ``start()`` until the first decoded frame
    """

    # The phases in the order they happen (``total`` spans them all).
    PHASES: ClassVar[tuple[str, ...]] = (
        "session",
        "offer_answer",
        "ice_dtls",
        "first_keyframe",
        "first_frame",
    )

    session: float | None = None
    offer_answer: float | None = None
    ice_dtls: float | None = None
    first_keyframe: float | None = None
    first_frame: float | None = None
    total: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in (*self.PHASES, "total")}

    def reached(self) -> tuple[str, ...]:
        """The phases completed so far, in order."""
        return tuple(name for name in self.PHASES if getattr(self, name) is not None)

    def pending(self, *, control_api: bool = True) -> str | None:
        """The phase under way (or where a failed start stopped); ``None`` once all completed.

        ``control_api=False`` (bare WHEP): there is no ``session`` phase.
        """
        for name in self.PHASES:
            if getattr(self, name) is None and (control_api or name != "session"):
                return name
        return None


@dataclass(frozen=True)
class KeepAliveStats:
    state: KeepAliveState
    sent: int
    last_error: str | None


@dataclass(frozen=True)
class SessionStats:
    """A snapshot of everything a session counts (see ``AvatarSession.stats()``).

    ``audio_level_db``: the RMS level of the latest 20 ms of audio (dBFS; -120 is silence),
    as the speech detector sees it now, not an average (``avatar-rtc probe`` reports one).
    """

    state: SessionState
    session_id: str | None
    connection_state: str
    selected_pair: SelectedPair | None
    timings: SessionTimings
    video: ReceiveStats
    audio: ReceiveStats
    video_decoder: DecoderStats
    audio_decoder: DecoderStats
    streams: tuple[StreamStats, ...]
    recorders: tuple[RecorderStats, ...]
    keep_alive: KeepAliveStats | None
    speaking: bool
    utterances: int
    audio_level_db: float
    errors: tuple[str, ...] = field(default_factory=tuple)
    closed_stream_drops: int = 0  # drops of streams closed (and forgotten) earlier
    # Media losses and their recovery: outages, reconnects, attempts, media time lost.
    reconnect: ReconnectStats = field(default_factory=ReconnectStats)
    # The adaptive playout delay in force (seconds), with ``max_playout_delay`` set; else None.
    playout_delay_s: float | None = None

    @property
    def stream_drops(self) -> int:
        """Frames dropped by all streams (slow consumers under ``latest``, overflow)."""
        open_drops = sum(s.dropped + s.callbacks_dropped for s in self.streams)
        return open_drops + self.closed_stream_drops

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: ``schema_version``, every field (nested dataclasses as dicts,
        enums as their values, tuples as lists) and ``stream_drops``."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        data.update(_plain(self))
        data["stream_drops"] = self.stream_drops
        return data


def _plain(value: Any) -> Any:
    """Dataclasses, enums and tuples as JSON-able dicts, values and lists (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
