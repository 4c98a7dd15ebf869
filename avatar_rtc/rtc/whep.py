"""WHEP signalling (RFC 9725): POST the offer, PATCH a counter-answer or trickled
candidates, DELETE.

Works against any WHEP server; it takes and returns SDP text, no WebRTC inside. Requests go
through the shared :mod:`avatar_rtc.http` layer (session, timeout, redirect hook, retries);
this module holds only WHEP's rules: which redirects to follow, which statuses to retry.

ICE servers announced in ``Link: <turn:...>; rel="ice-server"`` headers are parsed and
returned (:attr:`WhepResponse.ice_servers`, :attr:`WhepClient.ice_servers`). aiortc gathers
all candidates *before* the POST, so they cannot serve the attempt that announced them; a
caller may pass them as ``IceOptions.extra_servers`` of a later connection.

Trickle ICE (:meth:`WhepClient.trickle`): when the 201 says ``Accept-Patch:
application/trickle-ice-sdpfrag``, our candidates can be PATCHed (``If-Match`` the ETag) and
the server's may come back in the response. A server that refuses (404/405/501) costs nothing.

ICE restart (:meth:`WhepClient.restart_ice`, RFC 9725 section 4.3.2): PATCH an sdpfrag with new
``ice-ufrag``/``ice-pwd`` and ``If-Match: "*"``; the server answers 200 with its own new
credentials and candidates, and a new ETag. ``None`` when it does not restart ICE (405, 501,
or 422: it trickles only); a 404 means the resource is gone (:class:`WhepNotFoundError`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp

from ..errors import (
    AvatarRTCError,
    WhepConflictError,
    WhepError,
    WhepNotFoundError,
    WhepUnsupportedMediaTypeError,
)
from ..http.retry import Retry, RetryPolicy, call_with_retry
from ..http.transport import HttpResponse, HttpTransport, json_object
from ..redact import Secret, redact
from .codec_negotiation import check_counter_offer
from .ice_servers import IceServer

__all__ = ["WhepClient", "WhepResponse", "parse_link_ice_servers"]

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
_TRICKLE_REFUSED = frozenset({404, 405, 501})
_RESTART_REFUSED = frozenset({405, 422, 501})
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


class WhepRedirects:
    """WHEP's redirect rule: 307/308 are followed (at most ``max_redirects`` hops), 301/302/303
    are errors (they would turn the POST into a GET)."""

    def __init__(self, max_redirects: int) -> None:
        self.max_redirects = max_redirects

    def next_url(self, method: str, response: HttpResponse, hops: int) -> str | None:
        status = response.status
        if status in (301, 302, 303):
            raise WhepError(
                f"WHEP {method}: server redirected with {status}; WHEP allows only 307/308",
                status=status,
                body=_excerpt(response),
            )
        if status not in (307, 308):
            return None
        if hops >= self.max_redirects:
            raise WhepError(
                f"WHEP {method}: more than {self.max_redirects} redirects", status=status
            )
        target = response.headers.get("Location")
        if not target:
            raise WhepError(f"WHEP {method}: {status} without Location", status=status)
        resolved = _resolve(response.url, target)
        if resolved is None:
            raise WhepError(f"WHEP {method}: {status} with an unusable Location", status=status)
        return resolved


class WhepClient:
    """One WHEP resource: ``offer`` → (``patch_answer``) → ``delete``.

    - ``bearer``: sent as ``Authorization: Bearer`` when non-empty, to the origin of ``url``
      only (redirects and a ``Location`` elsewhere get none) unless ``cross_origin_auth``.
    - ``timeout``: per HTTP request. 307/308 are followed (``max_redirects`` hops) keeping
      method, body and (same origin) token; 301/302/303 are errors (WHEP forbids them).
    - 409/429/503 are retried after ``Retry-After`` (409 only when the header is present:
      without it, it means "already has a viewer"), else after a jittered backoff, at most
      ``max_attempts`` POSTs and within ``retry_deadline`` seconds; a single wait is capped at
      ``max_retry_wait``.
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
        cross_origin_auth: bool = False,
    ) -> None:
        self.url = url
        self._bearer = bearer if isinstance(bearer, Secret) or bearer is None else Secret(bearer)
        self._http = HttpTransport(
            session, timeout=timeout, home=url, cross_origin_auth=cross_origin_auth
        )
        self._redirects = WhepRedirects(max_redirects)
        self._retry = RetryPolicy(
            max_attempts=max(1, max_attempts),
            initial_delay=0.5,
            max_delay=4.0,
            max_retry_after=max_retry_wait,
            deadline=retry_deadline,
        )
        self._max_retry_wait = max_retry_wait
        self.location: str | None = None
        self.etag: str | None = None
        self.accepts_trickle = False
        self.ice_servers: tuple[IceServer, ...] = ()
        self._deleted = False
        self._delete_task: asyncio.Task[bool] | None = None

    # --- public API -----------------------------------------------------------------

    async def offer(self, sdp: str) -> WhepResponse:
        """POST the offer; returns the answer (201) or the server's counter-offer (406).

        A counter-offer whose video we cannot receive raises ``CodecNegotiationError``.
        """
        return await call_with_retry(
            functools.partial(self._post_offer, sdp),
            self._retry,
            name="WHEP POST",
            advise=self._advice,
        )

    async def patch_answer(self, sdp: str) -> None:
        """Send our answer to a 406 counter-offer (``PATCH <Location>``, ``application/sdp``)."""
        if self.location is None:
            raise WhepError("no WHEP resource to PATCH (no Location)", status=0)
        response = await self._request("PATCH", self.location, sdp)
        if response.status not in (200, 201, 204):
            raise _error_for(response, "PATCH")

    async def trickle(self, fragment: str) -> str | None:
        """PATCH trickled candidates (an sdpfrag); returns the server's sdpfrag, if it sent one.

        Refusals (404/405/501) and an ETag mismatch (412) are normal for servers that do not
        trickle: logged, never raised. Other failures raise like every request.
        """
        if self.location is None:
            raise WhepError("no WHEP resource to PATCH (no Location)", status=0)
        extra = {"If-Match": self.etag} if self.etag else {}
        response = await self._request(
            "PATCH", self.location, fragment, content_type=SDPFRAG, extra_headers=extra
        )
        status = response.status
        if status in _TRICKLE_REFUSED or status == 412:
            logger.info("WHEP server does not take trickled candidates (HTTP %d)", status)
            return None
        if status not in (200, 204):
            raise _error_for(response, "PATCH")
        if response.headers.get("ETag"):
            self.etag = response.headers["ETag"]
        if status == 200 and response.content_type == SDPFRAG and response.body:
            return response.text()
        return None

    async def restart_ice(self, fragment: str) -> str | None:
        """ICE restart: PATCH ``fragment`` (our new ``a=ice-ufrag``/``a=ice-pwd``, candidates)
        with ``If-Match: "*"``; returns the server's sdpfrag (its new credentials), or ``None``
        when it does not restart ICE (405/422/501). Keeps the new ETag.

        Raises :class:`WhepNotFoundError` (404: the resource is gone), :class:`WhepError` for
        other statuses or a 200 without the server's new credentials, ``ValueError`` for a
        fragment without credentials (a restart needs new ones).
        """
        if "a=ice-ufrag:" not in fragment or "a=ice-pwd:" not in fragment:
            raise ValueError("an ICE restart fragment needs a=ice-ufrag and a=ice-pwd")
        if self.location is None:
            raise WhepError("no WHEP resource to PATCH (no Location)", status=0)
        response = await self._request(
            "PATCH",
            self.location,
            fragment,
            content_type=SDPFRAG,
            extra_headers={"If-Match": '"*"'},
        )
        status = response.status
        if status in _RESTART_REFUSED:
            logger.info("WHEP server does not restart ICE (HTTP %d)", status)
            return None
        if status != 200:
            raise _error_for(response, "PATCH (ICE restart)")
        answer = response.text() if response.content_type == SDPFRAG else ""
        if "a=ice-ufrag:" not in answer or "a=ice-pwd:" not in answer:
            raise WhepError(
                "WHEP PATCH (ICE restart): 200 without the server's new ice-ufrag/ice-pwd",
                status=status,
                body=_excerpt(response),
            )
        self.etag = response.headers.get("ETag") or self.etag
        return answer

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
        await self._http.aclose()

    async def __aenter__(self) -> WhepClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.delete()
        await self.aclose()

    # --- internals ------------------------------------------------------------------

    async def _post_offer(self, sdp: str) -> WhepResponse:
        response = await self._request("POST", self.url, sdp)
        if response.status == 201:
            accepted = self._accept(response)  # first: the resource it names can be deleted
            if not accepted.sdp.lstrip().startswith("v="):
                # (it read as an answer without video: a codec disagreement, it was said)
                excerpt = _excerpt(response)
                kind = _media_type(response.content_type)
                raise WhepError(
                    f"WHEP POST answered 201 without an SDP answer (Content-Type {kind}): "
                    f"{excerpt or 'empty'}",
                    status=201,
                    body=excerpt,
                )
            return accepted
        if response.status == 406 and response.content_type == SDP:
            accepted = self._accept(response)  # first: the resource it names can be deleted
            check_counter_offer(accepted.sdp)
            return accepted
        raise _error_for(response, "POST")

    def _advice(self, error: AvatarRTCError) -> Retry | None:
        """409/429/503 are retried; 409 only with a ``Retry-After`` (else: a viewer already)."""
        if not isinstance(error, WhepError) or error.status not in _RETRYABLE:
            return None
        wait = error.retry_after
        if wait is None:
            return None if error.status == 409 else Retry()
        return Retry(min(wait, self._max_retry_wait))

    async def _delete_once(self) -> bool:
        assert self.location is not None
        location = self.location
        try:
            response = await self._request("DELETE", location, None)
        except AvatarRTCError as exc:  # no answer, or a redirect WHEP refuses
            logger.warning("WHEP DELETE %s failed: %s", location, exc)
            return False
        self._deleted = True
        status = response.status
        if 200 <= status < 300 or status in (404, 410):
            logger.info("WHEP DELETE %s -> %d", location, status)
            return True
        logger.warning("WHEP DELETE %s -> %d %s", location, status, _excerpt(response))
        return False

    def _accept(self, response: HttpResponse) -> WhepResponse:
        headers = response.headers
        location = _resolve(response.url, headers.get("Location", ""))
        if location:
            self.location = location
        else:
            logger.warning(
                "WHEP %d without a usable Location: the resource cannot be deleted",
                response.status,
            )
        self.etag = headers.get("ETag")
        self.accepts_trickle = any(
            part.split(";")[0].strip().lower() == SDPFRAG
            for value in headers.getall("Accept-Patch", [])
            for part in value.split(",")
        )
        self.ice_servers = tuple(
            server
            for value in headers.getall("Link", [])
            for server in parse_link_ice_servers(value)
        )
        return WhepResponse(
            sdp=response.body.decode("utf-8", "replace"),
            location=self.location,
            etag=self.etag,
            counter_offer=response.status == 406,
            ice_servers=self.ice_servers,
        )

    def _headers(self, body: str | None, content_type: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = content_type
            headers["Accept"] = content_type
        if self._bearer:  # never an empty Authorization header
            headers["Authorization"] = f"Bearer {self._bearer.reveal()}"
        return headers

    async def _request(
        self,
        method: str,
        url: str,
        body: str | None,
        *,
        content_type: str = SDP,
        extra_headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """One request, following 307/308 (same method, body and token); any final status."""
        return await self._http.request(
            method,
            url,
            label=f"WHEP {method}",
            headers={**self._headers(body, content_type), **(extra_headers or {})},
            data=body.encode("utf-8") if body is not None else None,
            redirects=self._redirects,
        )


def _resolve(base: str, location: str) -> str | None:
    """``location`` made absolute against ``base``; None when empty or unparsable."""
    if not location:
        return None
    try:
        return urljoin(base, location)
    except ValueError:  # e.g. "http://[" (an IPv6 host never closed)
        return None


def _error_for(response: HttpResponse, method: str) -> WhepError:
    status = response.status
    excerpt = _excerpt(response)
    message = f"WHEP {method} failed with HTTP {status}"
    if method == "POST" and 200 <= status < 300:  # (WHEP's answer comes with 201 only)
        message = f"WHEP {method} answered HTTP {status}, not the 201 Created WHEP requires"
    if excerpt:
        message += f": {excerpt}"
    error_type = {
        404: WhepNotFoundError,
        409: WhepConflictError,
        415: WhepUnsupportedMediaTypeError,
    }.get(status, WhepError)
    return error_type(message, status=status, body=excerpt, retry_after=response.retry_after)


def _media_type(content_type: str) -> str:
    """For messages: a Content-Type as plain as ``text/html``, else what it is not."""
    if not content_type:
        return "none"
    plain = redact(content_type)  # (a secret is masked, and "***" is no media type)
    return plain if _MEDIA_TYPE.fullmatch(plain) else "not a media type"


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9.+-]{1,40}/[A-Za-z0-9.+-]{1,60}")


def _excerpt(response: HttpResponse) -> str:
    """A short, redacted description of an error body; JSON / problem+json summarized."""
    text = response.body.decode("utf-8", "replace").strip()
    data = json_object(text) if "json" in response.content_type or text.startswith("{") else None
    if data:
        parts = [
            f"{key}={data[key]}"
            for key in ("title", "detail", "error", "message", "code", "type")
            if isinstance(data.get(key), str | int) and data.get(key) != ""
        ]
        if parts:
            text = ", ".join(parts)
    text = redact(" ".join(text.split()))  # masked before the cut: a cut secret is no match
    if len(text) > _BODY_EXCERPT:
        text = text[:_BODY_EXCERPT] + "..."
    return text


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
