"""State, timings and statistics of an :class:`~avatar_rtc.session.AvatarSession`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .api.keepalive import KeepAliveState
from .media.decoder import DecoderStats
from .media.streams import StreamStats
from .record.stats import RecorderStats
from .rtc.candidate_pair import SelectedPair
from .rtc.receiver import ReceiveStats

__all__ = ["KeepAliveStats", "SessionState", "SessionStats", "SessionTimings"]


class SessionState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"  # create/init-client, then WHEP + ICE/DTLS
    CONNECTED = "connected"  # media flows
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

    session: float | None = None
    offer_answer: float | None = None
    ice_dtls: float | None = None
    first_keyframe: float | None = None
    first_frame: float | None = None
    total: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "session": self.session,
            "offer_answer": self.offer_answer,
            "ice_dtls": self.ice_dtls,
            "first_keyframe": self.first_keyframe,
            "first_frame": self.first_frame,
            "total": self.total,
        }


@dataclass(frozen=True)
class KeepAliveStats:
    state: KeepAliveState
    sent: int
    last_error: str | None


@dataclass(frozen=True)
class SessionStats:
    """A snapshot of everything a session counts (see ``AvatarSession.stats()``)."""

    state: SessionState
    session_id: str | None
    connection_state: str
    selected_pair: SelectedPair | None
    timings: SessionTimings
    video: ReceiveStats
    audio: ReceiveStats
    video_decoder: DecoderStats | None
    audio_decoder: DecoderStats | None
    streams: tuple[StreamStats, ...]
    recorders: tuple[RecorderStats, ...]
    keep_alive: KeepAliveStats | None
    speaking: bool
    utterances: int
    audio_level_db: float
    errors: tuple[str, ...] = field(default_factory=tuple)
    closed_stream_drops: int = 0  # drops of streams closed (and forgotten) earlier

    @property
    def stream_drops(self) -> int:
        """Frames dropped by all streams (slow consumers under ``latest``, overflow)."""
        open_drops = sum(s.dropped + s.callbacks_dropped for s in self.streams)
        return open_drops + self.closed_stream_drops
