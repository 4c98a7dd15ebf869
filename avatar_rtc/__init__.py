"""avatar-rtc: a headless WebRTC media client for the Kaltura Avatar real-time API."""

from __future__ import annotations

from .errors import (
    ApiError,
    AuthenticationError,
    AvatarRTCError,
    BadRequestError,
    ConnectError,
    ConnectTimeoutError,
    NetworkError,
    NoCandidatesError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SessionEndedError,
    SessionNotFoundError,
    TransportError,
    WhepConflictError,
    WhepError,
    WhepNotFoundError,
    WhepUnsupportedMediaTypeError,
)
from .redact import Secret

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AuthenticationError",
    "AvatarRTCError",
    "BadRequestError",
    "ConnectError",
    "ConnectTimeoutError",
    "NetworkError",
    "NoCandidatesError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "Secret",
    "ServerError",
    "SessionEndedError",
    "SessionNotFoundError",
    "TransportError",
    "WhepConflictError",
    "WhepError",
    "WhepNotFoundError",
    "WhepUnsupportedMediaTypeError",
    "__version__",
]
