"""WHEP signalling (draft-ietf-wish-whep): POST the offer, PATCH a counter-answer, DELETE.

Works against any WHEP server; it takes and returns SDP text, no WebRTC inside.

ICE servers announced in ``Link: <turn:...>; rel="ice-server"`` headers are parsed and
returned (:attr:`WhepResponse.ice_servers`, :attr:`WhepClient.ice_servers`). aiortc gathers
all candidates *before* the POST and cannot restart ICE, so they cannot serve the attempt
that announced them: a caller passes them as ``IceOptions.extra_servers`` of the next
attempt (reconnect).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp

from ..errors import (
    NetworkError,
    RequestTimeoutError,
    WhepConflictError,
    WhepError,
    WhepNotFoundError,
    WhepUnsupportedMediaTypeError,
)
from ..redact import Secret, redact
from .ice_servers import IceServer

__all__ = ["WhepClient", "WhepResponse", "parse_link_ice_servers", "parse_retry_after"]

logger = logging.getLogger(__name__)

SDP = "application/sdp"
_RETRYABLE = frozenset({409, 429, 503})
_BODY_EXCERPT = 300


@dataclass(frozen=True)
class WhepResponse:
    """Result of the POST.

    ``counter_offer`` is True for ``406`` + SDP body: ``sdp`` is then the server's *offer*
    and the caller must answer with :meth:`WhepClient.patch_answer`.
    """

    sdp: str
    location: str | None
    etag: str | None = None
    counter_offer: bool = False
    ice_servers: tuple[IceServer, ...] = field(default=())


class WhepClient:
    """One WHEP resource: ``offer`` → (``patch_answer``) → ``delete``.

    - ``bearer``: sent as ``Authorization: Bearer`` when non-empty (also across redirects).
    - ``timeout``: per HTTP request. 307/308 are followed (``max_redirects`` hops) keeping
      method, body and token; 301/302/303 are errors (WHEP forbids them).
    - 409/429/503 are retried after ``Retry-After`` (409 only when the header is present:
      without it, it means "already has a viewer"), at most ``max_attempts`` POSTs and
      within ``retry_deadline`` seconds; a single wait is capped at ``max_retry_wait``.
    """

    def __init__(
        self,
        url: str,
        *,
        bearer: str | Secret | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 15.0,
        max_redirects: int = 10,
        max_attempts: int = 4,
        retry_deadline: float = 30.0,
        max_retry_wait: float = 10.0,
    ) -> None:
        self.url = url
        self._bearer = bearer if isinstance(bearer, Secret) or bearer is None else Secret(bearer)
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_redirects = max_redirects
        self._max_attempts = max(1, max_attempts)
        self._retry_deadline = retry_deadline
        self._max_retry_wait = max_retry_wait
        self.location: str | None = None
        self.etag: str | None = None
        self.ice_servers: tuple[IceServer, ...] = ()
        self._deleted = False
        self._delete_task: asyncio.Task[bool] | None = None

    # --- public API -----------------------------------------------------------------

    async def offer(self, sdp: str) -> WhepResponse:
        """POST the offer; returns the answer (201) or the server's counter-offer (406)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_deadline
        attempt = 0
        while True:
            attempt += 1
            status, headers, body, final_url = await self._request("POST", self.url, sdp)
            if status in (201, 406):
                content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
                if status == 201 or content_type == SDP:
                    return self._accept(status, headers, body, final_url)
            if status in _RETRYABLE and attempt < self._max_attempts:
                wait = parse_retry_after(headers.get("Retry-After"))
                if wait is None and status != 409:
                    wait = min(0.5 * 2 ** (attempt - 1), 4.0) * random.uniform(0.85, 1.15)
                if wait is not None:
                    wait = min(max(wait, 0.0), self._max_retry_wait)
                    if loop.time() + wait < deadline:
                        logger.info(
                            "WHEP POST answered %d; retrying in %.1f s (attempt %d/%d)",
                            status,
                            wait,
                            attempt + 1,
                            self._max_attempts,
                        )
                        await asyncio.sleep(wait)
                        continue
            raise _error_for(status, "POST", body, headers)

    async def patch_answer(self, sdp: str) -> None:
        """Send our answer to a 406 counter-offer (``PATCH <Location>``, ``application/sdp``)."""
        if self.location is None:
            raise WhepError("no WHEP resource to PATCH (no Location)", status=0)
        status, headers, body, _ = await self._request("PATCH", self.location, sdp)
        if status not in (200, 201, 204):
            raise _error_for(status, "PATCH", body, headers)

    async def delete(self) -> bool:
        """DELETE the resource once (later and concurrent calls share the first).

        Returns True when the server confirmed (2xx, or 404/410: already gone). Never raises
        for HTTP or network failures: they are logged (best-effort teardown).
        """
        if self._delete_task is None:
            if self.location is None:
                return False  # nothing created (yet): nothing to delete
            self._delete_task = asyncio.ensure_future(self._delete_once())
        return await asyncio.shield(self._delete_task)

    @property
    def deleted(self) -> bool:
        """True once a DELETE got an HTTP answer, whatever its status (see ``delete()``)."""
        return self._deleted

    async def aclose(self) -> None:
        """Close the HTTP session if this client created it (does not DELETE)."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WhepClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.delete()
        await self.aclose()

    # --- internals ------------------------------------------------------------------

    async def _delete_once(self) -> bool:
        assert self.location is not None
        location = self.location
        try:
            status, headers, body, _ = await self._request("DELETE", location, None)
        except (NetworkError, RequestTimeoutError) as exc:
            logger.warning("WHEP DELETE %s failed: %s", location, exc)
            return False
        self._deleted = True
        if 200 <= status < 300 or status in (404, 410):
            logger.info("WHEP DELETE %s -> %d", location, status)
            return True
        logger.warning("WHEP DELETE %s -> %d %s", location, status, _excerpt(body, headers))
        return False

    def _accept(self, status: int, headers: Any, body: bytes, final_url: str) -> WhepResponse:
        location = headers.get("Location")
        if location:
            self.location = urljoin(final_url, location)
        else:
            logger.warning("WHEP %d without Location: the resource cannot be deleted", status)
        self.etag = headers.get("ETag")
        self.ice_servers = tuple(
            server
            for value in headers.getall("Link", [])
            for server in parse_link_ice_servers(value)
        )
        return WhepResponse(
            sdp=body.decode("utf-8", "replace"),
            location=self.location,
            etag=self.etag,
            counter_offer=status == 406,
            ice_servers=self.ice_servers,
        )

    def _headers(self, body: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = SDP
            headers["Accept"] = SDP
        if self._bearer:  # never an empty Authorization header
            headers["Authorization"] = f"Bearer {self._bearer.reveal()}"
        return headers

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def _request(
        self, method: str, url: str, body: str | None
    ) -> tuple[int, Any, bytes, str]:
        """One request following 307/308 by hand: (status, headers, body, final URL)."""
        headers = self._headers(body)
        data = body.encode("utf-8") if body is not None else None
        for _hop in range(self._max_redirects + 1):
            started = time.monotonic()
            try:
                async with self._http().request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                    timeout=self._timeout,
                ) as response:
                    content = await response.read()
                    status, response_headers = response.status, response.headers
            except TimeoutError as exc:
                raise RequestTimeoutError(f"WHEP {method} {url} timed out") from exc
            except aiohttp.ClientError as exc:
                raise NetworkError(f"WHEP {method} {url} failed: {redact(str(exc))}") from exc
            logger.debug(
                "WHEP %s %s -> %d (%.0f ms)",
                method,
                url,
                status,
                (time.monotonic() - started) * 1000,
            )
            if status in (307, 308):
                target = response_headers.get("Location")
                if not target:
                    raise WhepError(f"WHEP {method}: {status} without Location", status=status)
                url = urljoin(url, target)
                continue
            if status in (301, 302, 303):
                raise WhepError(
                    f"WHEP {method}: server redirected with {status}; WHEP allows only 307/308",
                    status=status,
                    body=_excerpt(content, response_headers),
                )
            return status, response_headers, content, url
        raise WhepError(f"WHEP {method}: more than {self._max_redirects} redirects", status=status)


def _error_for(status: int, method: str, body: bytes, headers: Any) -> WhepError:
    excerpt = _excerpt(body, headers)
    message = f"WHEP {method} failed with HTTP {status}"
    if excerpt:
        message += f": {excerpt}"
    if status == 404:
        return WhepNotFoundError(message, status=status, body=excerpt)
    if status == 409:
        return WhepConflictError(message, status=status, body=excerpt)
    if status == 415:
        return WhepUnsupportedMediaTypeError(message, status=status, body=excerpt)
    return WhepError(message, status=status, body=excerpt)


def _excerpt(body: bytes, headers: Any) -> str:
    """A short, redacted description of an error body; JSON / problem+json summarized."""
    text = body.decode("utf-8", "replace").strip()
    content_type = headers.get("Content-Type", "").lower()
    if "json" in content_type or text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            parts = [
                f"{key}={data[key]}"
                for key in ("title", "detail", "error", "message", "code", "type")
                if isinstance(data.get(key), str | int) and data.get(key) != ""
            ]
            if parts:
                text = ", ".join(parts)
    text = " ".join(text.split())
    if len(text) > _BODY_EXCERPT:
        text = text[:_BODY_EXCERPT] + "..."
    return redact(text)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_LINK_RE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+(?:=(?:\"[^\"]*\"|[^;,]*))?)*)")
_PARAM_RE = re.compile(r";\s*([^=;,\s]+)\s*(?:=\s*(\"[^\"]*\"|[^;,]*))?")


def parse_link_ice_servers(value: str) -> list[IceServer]:
    """ICE servers of one ``Link`` header value (RFC 8288; WHEP/WHIP ``rel="ice-server"``)."""
    servers: list[IceServer] = []
    for match in _LINK_RE.finditer(value):
        url, params_text = match.group(1).strip(), match.group(2)
        params: dict[str, str] = {}
        for name, raw in _PARAM_RE.findall(params_text):
            params[name.lower()] = raw.strip().strip('"')
        if "ice-server" not in params.get("rel", "").split():
            continue
        if not url.lower().startswith(("stun:", "stuns:", "turn:", "turns:")):
            continue
        servers.append(
            IceServer(url, params.get("username") or None, params.get("credential") or None)
        )
    return servers
