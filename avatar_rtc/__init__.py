"""avatar-rtc: a headless WebRTC media client for the Kaltura Avatar real-time API."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    ApiError,
    AuthenticationError,
    AvatarRTCError,
    BadRequestError,
    CodecNegotiationError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    HttpStatusError,
    MediaLostError,
    NetworkError,
    NoCandidatesError,
    NoMediaError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    ServiceUnreachableError,
    SessionEndedError,
    SessionNotFoundError,
    ThresholdError,
    TransportError,
    WhepConflictError,
    WhepError,
    WhepNotFoundError,
    WhepUnsupportedMediaTypeError,
)
from .redact import Secret

if TYPE_CHECKING:
    from .api.client import ControlClient
    from .api.session_scope import LiveSession
    from .media.formats import AudioFormat, VideoFormat
    from .media.frames import AudioFrame, VideoFrame
    from .media.streams import AudioStream, StreamStats, VideoStream
    from .media.sync_iter import BackgroundLoop
    from .options import SessionOptions
    from .record.errors import RecordError
    from .record.options import EncodeOptions, RecordOptions
    from .record.recorder import Recorder
    from .record.stats import RecordedStreamStats, RecorderStats
    from .rtc.candidate_pair import SelectedPair
    from .rtc.clock import AvClock
    from .rtc.connection import MediaConnection
    from .rtc.ice_options import IceOptions
    from .rtc.receiver import ReceivePipeline
    from .rtc.reconnect import Outage, ReconnectPolicy
    from .session import AvatarSession, SessionClosedError, SessionEvent, SessionStateError
    from .session_stats import SessionState, SessionStats, SessionTimings
    from .speech_detector import SpeechDetector
    from .sync_session import SessionFrames, SyncAvatarSession

__version__ = "0.1.0"

# A library leaves logging to the application: without a handler of its own, our warnings
# would reach Python's last-resort handler (stderr) in programs that never configured logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# The media stack (aiortc, PyAV) takes seconds to import: load it on first use, so that
# `import avatar_rtc` (and the CLI's --help) stays fast.
_LAZY: dict[str, str] = {
    "AudioFormat": ".media.formats",
    "AudioFrame": ".media.frames",
    "AudioStream": ".media.streams",
    "AvClock": ".rtc.clock",
    "AvatarSession": ".session",
    "BackgroundLoop": ".media.sync_iter",
    "ControlClient": ".api.client",
    "EncodeOptions": ".record.options",
    "IceOptions": ".rtc.ice_options",
    "LiveSession": ".api.session_scope",
    "MediaConnection": ".rtc.connection",
    "Outage": ".rtc.reconnect",
    "ReceivePipeline": ".rtc.receiver",
    "ReconnectPolicy": ".rtc.reconnect",
    "RecordError": ".record.errors",
    "RecordOptions": ".record.options",
    "RecordedStreamStats": ".record.stats",
    "Recorder": ".record.recorder",
    "RecorderStats": ".record.stats",
    "SelectedPair": ".rtc.candidate_pair",
    "SessionClosedError": ".session",
    "SessionEvent": ".session",
    "SessionFrames": ".sync_session",
    "SessionOptions": ".options",
    "SessionState": ".session_stats",
    "SessionStateError": ".session",
    "SessionStats": ".session_stats",
    "SessionTimings": ".session_stats",
    "SpeechDetector": ".speech_detector",
    "StreamStats": ".media.streams",
    "SyncAvatarSession": ".sync_session",
    "VideoFormat": ".media.formats",
    "VideoFrame": ".media.frames",
    "VideoStream": ".media.streams",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ApiError",
    "AudioFormat",
    "AudioFrame",
    "AudioStream",
    "AuthenticationError",
    "AvClock",
    "AvatarRTCError",
    "AvatarSession",
    "BackgroundLoop",
    "BadRequestError",
    "CodecNegotiationError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "ControlClient",
    "EncodeOptions",
    "HttpStatusError",
    "IceOptions",
    "LiveSession",
    "MediaConnection",
    "MediaLostError",
    "NetworkError",
    "NoCandidatesError",
    "NoMediaError",
    "Outage",
    "PermissionDeniedError",
    "RateLimitedError",
    "ReceivePipeline",
    "ReconnectPolicy",
    "RecordError",
    "RecordOptions",
    "RecordedStreamStats",
    "Recorder",
    "RecorderStats",
    "RequestTimeoutError",
    "Secret",
    "SelectedPair",
    "ServerError",
    "ServiceUnreachableError",
    "SessionClosedError",
    "SessionEndedError",
    "SessionEvent",
    "SessionFrames",
    "SessionNotFoundError",
    "SessionOptions",
    "SessionState",
    "SessionStateError",
    "SessionStats",
    "SessionTimings",
    "SpeechDetector",
    "StreamStats",
    "SyncAvatarSession",
    "ThresholdError",
    "TransportError",
    "VideoFormat",
    "VideoFrame",
    "VideoStream",
    "WhepConflictError",
    "WhepError",
    "WhepNotFoundError",
    "WhepUnsupportedMediaTypeError",
    "__version__",
]
