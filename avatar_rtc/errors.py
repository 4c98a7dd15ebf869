"""The exception hierarchy of avatar-rtc.

Every error the library raises on purpose derives from :class:`AvatarRTCError`, with one
exception: a wait whose bound the caller gave (``wait_first_frame(timeout)``,
``wait_idle(timeout)``, ``iter_video(timeout=...)``) ends with the builtin ``TimeoutError``,
as ``asyncio.wait_for`` does. The library's own time limits (``RequestTimeoutError``,
``ConnectTimeoutError``) derive from ``AvatarRTCError``, not from ``TimeoutError``.
HTTP-level failures carry the status and the server's ``error`` string (or body);
no exception message ever contains a KS, a JWT or a TURN credential.

Each class has an ``exit_code`` (the ``avatar-rtc`` command exits with the code of the error
that ended it; subclasses inherit it):

====  ==============================  =====================================================
code  class                           meaning
====  ==============================  =====================================================
1     :class:`AvatarRTCError`         anything else (service 4xx/5xx, recording failure...)
2     :class:`ConfigurationError`     usage: a missing or invalid option / setting
3     :class:`NoMediaError`           connected, but no media arrived (or it stopped)
4     :class:`ThresholdError`         a measured value is beyond the limit it was given
5     :class:`AuthenticationError`    the KS or the session token was refused (401/403)
6     :class:`TransportError`         no HTTP answer: network failure or request timeout
7     :class:`ConnectError`,          the media connection could not be established
      :class:`WhepError`              (ICE/DTLS, WHEP signalling, codecs)
====  ==============================  =====================================================

(0 is success; 130/143 an interrupt by SIGINT/SIGTERM.)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApiError",
    "AuthenticationError",
    "AvatarRTCError",
    "BadRequestError",
    "CodecNegotiationError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeoutError",
    "HttpStatusError",
    "MediaLostError",
    "NetworkError",
    "NoCandidatesError",
    "NoMediaError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceUnreachableError",
    "SessionEndedError",
    "SessionNotFoundError",
    "ThresholdError",
    "TransportError",
    "WhepConflictError",
    "WhepError",
    "WhepNotFoundError",
    "WhepUnsupportedMediaTypeError",
    "api_error_for_status",
]


class AvatarRTCError(Exception):
    """Base class of every error raised by avatar-rtc."""

    exit_code: ClassVar[int] = 1


class ConfigurationError(AvatarRTCError, ValueError):
    """A required setting is missing or invalid (e.g. no KS given and ``AVATAR_KS`` unset)."""

    exit_code = 2


class ThresholdError(AvatarRTCError):
    """A measured value is beyond the limit the caller set (a QA check failed)."""

    exit_code = 4


# --- transport (no HTTP status) -------------------------------------------------


class TransportError(AvatarRTCError):
    """The request did not get an HTTP answer."""

    exit_code = 6


class RequestTimeoutError(TransportError):
    """The request timed out."""


class NetworkError(TransportError):
    """The connection failed (refused, reset, DNS, TLS)."""


class HttpStatusError(AvatarRTCError):
    """A server answered with an error status (base of :class:`ApiError` and :class:`WhepError`).

    ``status`` is the HTTP status, ``retry_after`` the seconds of its ``Retry-After`` header.
    """

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


# --- Control API ----------------------------------------------------------------


class ApiError(HttpStatusError):
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
        super().__init__(message, status=status, retry_after=retry_after)
        self.error = error
        self.endpoint = endpoint


class BadRequestError(ApiError):
    """400: the request was malformed (e.g. ``Text is required``)."""


class AuthenticationError(ApiError):
    """401: invalid KS, or invalid/expired session token (and 403, its subclass)."""

    exit_code = 5


class PermissionDeniedError(AuthenticationError):
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


class WhepError(HttpStatusError):
    """The WHEP endpoint answered with an unexpected status.

    ``body`` is an excerpt of the response body (JSON and problem-details bodies included).
    """

    exit_code = 7

    def __init__(
        self, message: str, *, status: int, body: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
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

    exit_code = 7


class NoMediaError(ConnectError):
    """Connected, but no media arrived, or it stopped arriving, within the allowed time."""

    exit_code = 3


class MediaLostError(NoMediaError):
    """Media stopped arriving and could not be restored: every reconnect attempt failed (or
    reconnecting is off). The service session itself being gone is a
    :class:`WhepNotFoundError` instead."""


class ServiceUnreachableError(MediaLostError):
    """Media lost and the WHEP server refuses connections (TCP RST from its host: the network
    works, nothing listens there): the sender is gone, reconnecting is pointless.

    ``origin``: the WHEP server's ``scheme://host:port`` (no path, no credentials).
    """

    def __init__(self, message: str, *, origin: str) -> None:
        super().__init__(message)
        self.origin = origin


class NoCandidatesError(ConnectError):
    """ICE gathering produced no usable candidate (e.g. wrong TURN credentials under relay)."""


class ConnectTimeoutError(ConnectError):
    """ICE/DTLS did not complete within the connect timeout."""


class CodecNegotiationError(ConnectError):
    """The server cannot send any of the video codecs that were offered.

    Raised when the WHEP server refused an offer narrowed to fewer codecs than we can receive
    (``status``: its HTTP status), or answered with the video section rejected (port 0) or with
    codecs that were not offered (``status`` None). ``offered``: the codecs of our offer;
    ``answered``: the video codecs of the server's answer (empty when it sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        offered: tuple[str, ...],
        answered: tuple[str, ...] = (),
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.offered = offered
        self.answered = answered
        self.status = status
