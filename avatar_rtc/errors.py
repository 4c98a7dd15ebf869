"""The exception hierarchy of avatar-rtc.

Every error the library raises on purpose derives from :class:`AvatarRTCError`.
HTTP-level failures carry the status and the server's ``error`` string (or body);
no exception message ever contains a KS, a JWT or a TURN credential.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthenticationError",
    "AvatarRTCError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "NetworkError",
    "NoCandidatesError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "SessionEndedError",
    "SessionNotFoundError",
    "TransportError",
    "WhepConflictError",
    "WhepError",
    "WhepNotFoundError",
    "WhepUnsupportedMediaTypeError",
    "api_error_for_status",
]


class AvatarRTCError(Exception):
    """Base class of every error raised by avatar-rtc."""


class ConfigurationError(AvatarRTCError, ValueError):
    """A required setting is missing or invalid (e.g. no KS given and ``AVATAR_KS`` unset)."""


# --- transport (no HTTP status) -------------------------------------------------


class TransportError(AvatarRTCError):
    """The request did not get an HTTP answer."""


class RequestTimeoutError(TransportError):
    """The request timed out."""


class NetworkError(TransportError):
    """The connection failed (refused, reset, DNS, TLS)."""


# --- Control API ----------------------------------------------------------------


class ApiError(AvatarRTCError):
    """The Control API answered with an error status.

    ``status`` is the HTTP status, ``error`` the ``error`` string of the JSON body
    (or a short excerpt of a non-JSON body), ``endpoint`` the operation name.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error: str | None = None,
        endpoint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.endpoint = endpoint
        self.retry_after = retry_after


class BadRequestError(ApiError):
    """400: the request was malformed (e.g. ``Text is required``)."""


class AuthenticationError(ApiError):
    """401: invalid KS, or invalid/expired session token."""


class PermissionDeniedError(ApiError):
    """403: the KS is valid but not authorized (e.g. not an admin KS)."""


class SessionNotFoundError(ApiError):
    """404: no such session (also what the live service answers for an ended one)."""


class SessionEndedError(ApiError):
    """410: the session has ended."""


class RateLimitedError(ApiError):
    """429: too many requests; ``retry_after`` holds the server's hint when given."""


class ServerError(ApiError):
    """5xx: the service failed."""


_STATUS_TO_ERROR: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: SessionNotFoundError,
    410: SessionEndedError,
    429: RateLimitedError,
}


def api_error_for_status(status: int) -> type[ApiError]:
    """The exception class for an HTTP error status of the Control API."""
    if status >= 500:
        return ServerError
    return _STATUS_TO_ERROR.get(status, ApiError)


# --- WHEP -----------------------------------------------------------------------


class WhepError(AvatarRTCError):
    """The WHEP endpoint answered with an unexpected status.

    ``body`` is an excerpt of the response body (JSON and problem-details bodies included).
    """

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class WhepNotFoundError(WhepError):
    """404: no such stream; for the avatar service the session is gone (re-create it)."""


class WhepConflictError(WhepError):
    """409: the stream already has a viewer (avatar service) or no publisher yet."""


class WhepUnsupportedMediaTypeError(WhepError):
    """415: the server did not accept the offer's content type."""


# --- media connection -----------------------------------------------------------


class ConnectError(AvatarRTCError):
    """The media connection could not be established."""


class NoCandidatesError(ConnectError):
    """ICE gathering produced no usable candidate (e.g. wrong TURN credentials under relay)."""


class ConnectTimeoutError(ConnectError):
    """ICE/DTLS did not complete within the connect timeout."""
