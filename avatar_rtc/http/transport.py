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
returns the next URL (the request is repeated there: same method, body and headers, so a
Bearer token is kept), ``None`` (the 3xx is the answer) or raises.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDictProxy

from ..errors import NetworkError, RequestTimeoutError
from ..redact import redact
from .retry import parse_retry_after

__all__ = ["HttpResponse", "HttpTransport", "RedirectPolicy", "json_object"]

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
        return self.body.decode(self.charset or "utf-8", "replace")


def json_object(body: str | bytes) -> dict[str, Any] | None:
    """A body as a JSON object: ``{}`` when empty, ``None`` when it is not a JSON object."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class RedirectPolicy(Protocol):
    """Decides what a 3xx answer means; see the module docstring."""

    def next_url(self, method: str, response: HttpResponse, hops: int) -> str | None:
        """The URL to repeat the request at, or ``None``; ``hops``: redirects followed so far."""
        ...


class HttpTransport:
    """Sends requests on one ``aiohttp.ClientSession``, each within ``timeout`` seconds.

    A borrowed ``session`` is never closed; without one, a session is created on first use
    (inside the running loop) and closed by :meth:`aclose`.
    """

    def __init__(self, session: aiohttp.ClientSession | None = None, *, timeout: float) -> None:
        self.timeout = timeout
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
        hops = 0
        while True:
            response = await self._send_once(
                method, url, label, headers, data, json, redirects is None
            )
            if redirects is None or not 300 <= response.status < 400:
                return response
            target = redirects.next_url(method, response, hops)
            if target is None:
                return response
            url, hops = target, hops + 1

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
            raise NetworkError(f"{label}: request failed: {detail}") from exc
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
