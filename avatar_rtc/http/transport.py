"""HttpTransport: one aiohttp session, one request at a time, failures mapped to our errors.

The Control API client and the WHEP client both send through it. It owns (or borrows) the
``aiohttp.ClientSession``, applies a per-request timeout, reads the whole body, and turns
"no HTTP answer" into :class:`~avatar_rtc.errors.RequestTimeoutError` or
:class:`~avatar_rtc.errors.NetworkError` with secrets masked. Any HTTP status is returned
as is: what a status means is the caller's protocol.

``timeout`` (seconds, for the whole request) is an attribute: a change applies to the next
request.

Redirects: without a :class:`RedirectPolicy` aiohttp follows them (and drops
``Authorization`` on a cross-origin hop). With one, every 3xx goes to the policy, which
returns the next URL (the request is repeated there: same method, body and headers), ``None``
(the 3xx is the answer) or raises.

Credentials (``Authorization``, ``Cookie``) go only to one origin (scheme, host and port): the
transport's ``home`` (the URL the caller was given, e.g. the WHEP endpoint), else the first URL
of each request. A redirect to another origin, or a resource URL there (a WHEP ``Location``),
gets the request without them, as browsers and aiohttp do on redirects, unless the transport
was built with ``cross_origin_auth=True``: the one switch that lets a token leave its origin.

TLS: certificates are always verified (aiohttp's default; nothing here turns it off).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from ..errors import ConfigurationError, NetworkError, RequestTimeoutError, TransportError
from ..redact import redact, redact_exception
from .retry import parse_retry_after

__all__ = [
    "CREDENTIAL_HEADERS",
    "HttpResponse",
    "HttpTransport",
    "RedirectPolicy",
    "check_http_url",
    "header_safe",
    "json_object",
    "same_origin",
]

# What a redirect to another origin must not carry (unless the caller opted in).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete answer: status, headers, the whole body and the URL that gave it."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str
    charset: str | None = None

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (``""`` when absent)."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    @property
    def retry_after(self) -> float | None:
        """Seconds from the ``Retry-After`` header, ``None`` when absent or unusable."""
        return parse_retry_after(self.headers.get("Retry-After"))

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", "replace")
        except LookupError:  # a charset Python does not know (or not a text encoding)
            return self.body.decode("utf-8", "replace")


def json_object(body: str | bytes) -> dict[str, Any] | None:
    """A body as a JSON object: ``{}`` when empty, ``None`` when it is not a JSON object."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        return None
    return data if isinstance(data, dict) else None


def check_http_url(name: str, url: str) -> None:
    """``ConfigurationError`` unless ``url`` is http(s) with a host and a valid port (else its
    first request fails as a network error: "request failed: :///v1/...")."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError when out of range)
    except ValueError as exc:
        raise ConfigurationError(f"{name} {redact(url)!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} {redact(url)!r}: an http:// or https:// URL with a host")


def header_safe(value: str) -> bool:
    """Whether ``value`` can be an HTTP header value as is (no control characters)."""
    return value.isprintable()


def same_origin(a: str, b: str) -> bool:
    """Whether two absolute URLs share scheme, host and port (an unparsable one: no)."""
    try:
        one, two = urlsplit(a), urlsplit(b)
        return (one.scheme.lower(), one.hostname, one.port) == (
            two.scheme.lower(),
            two.hostname,
            two.port,
        )
    except ValueError:
        return False


class RedirectPolicy(Protocol):
    """Decides what a 3xx answer means; see the module docstring."""

    def next_url(self, method: str, response: HttpResponse, hops: int) -> str | None:
        """The URL to repeat the request at, or ``None``; ``hops``: redirects followed so far."""
        ...


class HttpTransport:
    """Sends requests on one ``aiohttp.ClientSession``, each within ``timeout`` seconds.

    A borrowed ``session`` is never closed; without one, a session is created on first use
    (inside the running loop) and closed by :meth:`aclose`. ``home`` and
    ``cross_origin_auth``: where credentials may go (see the module docstring).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float,
        home: str | None = None,
        cross_origin_auth: bool = False,
    ) -> None:
        self.timeout = timeout
        self.home = home
        self.cross_origin_auth = cross_origin_auth
        self._session = session
        self._owns_session = session is None

    async def request(
        self,
        method: str,
        url: str,
        *,
        label: str,
        headers: dict[str, str] | None = None,
        data: Any = None,
        json: Any = None,
        redirects: RedirectPolicy | None = None,
    ) -> HttpResponse:
        """Send once (plus the redirects ``redirects`` follows); any status is returned.

        ``label`` names the operation in log lines and error messages (e.g. ``"create"``).
        """
        home = self.home or url
        hops = 0
        while True:
            response = await self._send_once(
                method, url, label, self._allowed(headers, home, url, label), data, json,
                redirects is None,
            )  # fmt: skip
            if redirects is None or not 300 <= response.status < 400:
                return response
            target = redirects.next_url(method, response, hops)
            if target is None:
                return response
            url, hops = target, hops + 1

    def _allowed(
        self, headers: dict[str, str] | None, home: str, url: str, label: str
    ) -> dict[str, str] | None:
        """``headers`` without the credentials when ``url`` is off the ``home`` origin."""
        if not headers or self.cross_origin_auth or same_origin(home, url):
            return headers
        kept = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        if len(kept) < len(headers):
            _log.info(
                "%s: %s is on another origin than %s: credentials not sent "
                "(cross_origin_auth=True sends them)", label, url, home,
            )  # fmt: skip
        return kept

    async def _send_once(
        self,
        method: str,
        url: str,
        label: str,
        headers: dict[str, str] | None,
        data: Any,
        json: Any,
        allow_redirects: bool,
    ) -> HttpResponse:
        timeout = self.timeout
        started = time.monotonic()
        try:
            async with self._http().request(
                method,
                url,
                headers=headers,
                data=data,
                json=json,
                allow_redirects=allow_redirects,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as answer:
                response = HttpResponse(
                    status=answer.status,
                    headers=answer.headers,
                    body=await answer.read(),
                    url=str(answer.url),
                    charset=answer.charset,
                )
        except TimeoutError as exc:
            raise RequestTimeoutError(f"{label}: no answer within {timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            detail = redact(str(exc)) or type(exc).__name__
            raise NetworkError(f"{label}: request failed: {detail}") from redact_exception(exc)
        except ValueError as exc:
            # aiohttp refused to build the request (a control character in a header value,
            # credentials in the URL beside an Authorization header): nothing was sent.
            detail = redact(str(exc)) or type(exc).__name__
            raise TransportError(f"{label}: request not sent: {detail}") from redact_exception(exc)
        elapsed_ms = (time.monotonic() - started) * 1000
        _log.debug("%s: %s %s -> %d (%.0f ms)", label, method, url, response.status, elapsed_ms)
        return response

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def aclose(self) -> None:
        """Close the session if this transport created it (a later request opens a new one)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
