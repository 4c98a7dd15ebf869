"""ControlCalls: the calls of the avatar service's Control API (``/v1/avatar-session``).

The low-level client: one method per endpoint; it holds nothing between calls but the HTTP
session. :class:`~avatar_rtc.api.client.ControlClient` adds the session scope built on it.

Create and the catalog list authenticate with ``Authorization: KS <ks>``; every other
call with ``Authorization: Bearer <session JWT>``. Secrets stay wrapped in
:class:`~avatar_rtc.redact.Secret` and are revealed only to build that header. Requests go
through the shared :mod:`avatar_rtc.http` layer (session, timeout, retries, error mapping).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit

import aiohttp

from ..errors import (
    ApiError,
    ConfigurationError,
    SessionEndedError,
    SessionNotFoundError,
    api_error_for_status,
)
from ..http.retry import RetryPolicy, call_with_retry
from ..http.transport import HttpTransport, check_http_url, header_safe, json_object
from ..redact import Secret, redact
from .audio_duration import audio_duration
from .audio_mp3 import is_mp3, to_mp3
from .models import CatalogItem, ClientConfig, SessionHandle, TurnConfig
from .speech_input import duration_text, guess_audio_type, new_turn_id
from .text_chunks import DEFAULT_MAX_CHUNK_CHARS, chunk_text

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_URL",
    "ENV_KS",
    "CatalogType",
    "ControlCalls",
]

_log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.avatar.us.kaltura.ai/v1/avatar-session"
ENV_API_URL = "AVATAR_API_URL"
ENV_KS = "AVATAR_KS"

CatalogType = Literal["Visual", "Voice"]

# A TURN host that fits in a turn: URL: a name or IPv4 address, or an [IPv6] address.
_TURN_HOST = re.compile(r"\[[0-9a-fA-F:.]+\]|[^\s?:/\[\]@#]+")
_CATALOG_PAGE_SIZE = 100
_BODY_EXCERPT_CHARS = 200


class ControlCalls:
    """Async client of the Control API (use :class:`~avatar_rtc.api.client.ControlClient`).

    ``base_url`` defaults to ``$AVATAR_API_URL``, then the live US service; ``ks`` to
    ``$AVATAR_KS``. Only keep-alive, end and the catalog list are retried (``retry``);
    every other call opens something on the service and is sent exactly once.
    """

    def __init__(
        self,
        base_url: str | None = None,
        ks: str | Secret | None = None,
        *,
        create_path: Literal["/create", ""] = "/create",
        avatar_id_field: Literal["id", "avatarId"] = "id",
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        url = base_url or os.environ.get(ENV_API_URL) or DEFAULT_BASE_URL
        check_http_url("the Control API URL", url)
        self.base_url = url.rstrip("/")
        ks = ks if ks is not None else os.environ.get(ENV_KS)
        if isinstance(ks, str):
            ks = Secret(ks)
        self._ks: Secret | None = ks or None  # an empty KS counts as none
        if self._ks is not None and not header_safe(self._ks.reveal()):
            raise ConfigurationError("the KS holds control characters (a line break?)")
        self.create_path = create_path
        self.avatar_id_field = avatar_id_field
        self.retry = retry or RetryPolicy()
        self._http = HttpTransport(session, timeout=timeout, home=self.base_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    @property
    def timeout(self) -> float:
        """Seconds each request may take (a change applies to the next request)."""
        return self._http.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._http.timeout = seconds

    @property
    def catalog_url(self) -> str:
        """``{origin}/v1/catalog-item/list``: the catalog lives beside the session API."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}/v1/catalog-item/list"

    # --- session lifecycle ------------------------------------------------------

    async def create(
        self, avatar_id: str, voice_id: str | None = None, **voice_extra: Any
    ) -> SessionHandle:
        """Open a session; ``voice_extra`` goes into ``voiceConfig`` (speed, language, ...)."""
        body: dict[str, Any] = {"visualConfig": {self.avatar_id_field: avatar_id}}
        voice: dict[str, Any] = {"id": voice_id} if voice_id else {}
        voice.update(voice_extra)
        if voice:
            body["voiceConfig"] = voice
        url = self.base_url + self.create_path
        try:
            data = await self._post("create", url, "KS", self._require_ks(), json_body=body)
        except SessionNotFoundError as exc:
            if self.create_path != "/create":
                raise
            data = await self._create_as_the_page_says(url, body, avatar_id, exc)
        session_id = _required_str(data, "sessionId", "create")
        token = Secret(_required_str(data, "token", "create"))
        if not header_safe(token.reveal()):  # it goes into an Authorization header
            raise _malformed("create", "token")
        _log.info("created avatar session %s", session_id)
        return SessionHandle(session_id=session_id, token=token)

    async def _create_as_the_page_says(
        self, url: str, body: dict[str, Any], avatar_id: str, refused: SessionNotFoundError
    ) -> dict[str, Any]:
        """The docs disagree on create (kaltura-avatar-api.md §1.1): working clients POST
        ``/create`` with ``visualConfig.id``, the create-session page the bare path with
        ``visualConfig.avatarId``. A 404 at ``/create`` opened nothing: try the page's form,
        naming the avatar both ways."""
        _log.info("create: %s answered 404; trying %s", url, self.base_url)
        body = {**body, "visualConfig": {"id": avatar_id, "avatarId": avatar_id}}
        try:
            return await self._post("create", self.base_url, "KS", self._require_ks(), body)
        except SessionNotFoundError:  # neither exists: say so, not "no such session"
            raise ApiError(
                f"create failed: HTTP 404 at {url} and at {self.base_url} (the Control API URL?)",
                status=404,
                error=refused.error,
                endpoint="create",
            ) from None

    async def init_client(self, handle: SessionHandle) -> ClientConfig:
        """The WHEP URL and TURN config of the session. Call once: it may open a WHEP resource."""
        data = await self._post_bearer("init-client", handle)
        whep_url = _required_str(data, "whepUrl", "init-client")
        turn_data = data.get("turn")
        turn = TurnConfig.from_json(turn_data) if isinstance(turn_data, dict) else None
        if turn is not None and not turn.url.strip():
            _log.warning("init-client: a TURN object without url: no TURN server")
            turn = None
        if turn is not None and not _TURN_HOST.fullmatch(turn.host):
            raise _malformed("init-client", "turn.url")  # no turn:/turns: URL could hold it
        return ClientConfig(whep_url=whep_url, turn=turn)

    async def keep_alive(self, handle: SessionHandle) -> None:
        """Tell the service the session is still in use (retried)."""
        await call_with_retry(
            functools.partial(self._post_bearer, "keep-alive", handle),
            self.retry,
            name="keep-alive",
        )

    async def end(self, handle: SessionHandle) -> bool:
        """End the session (retried). ``False`` when the service says it is already gone."""
        try:
            await call_with_retry(
                functools.partial(self._post_bearer, "end", handle), self.retry, name="end"
            )
        except (SessionNotFoundError, SessionEndedError) as error:
            # The live service answers 404 for an ended session, the docs say 410.
            _log.info("session %s was already gone (HTTP %d)", handle.session_id, error.status)
            return False
        _log.info("ended avatar session %s", handle.session_id)
        return True

    # --- speech -----------------------------------------------------------------

    async def say_text(
        self,
        handle: SessionHandle,
        text: str,
        *,
        turn_id: str | None = None,
        max_chunk_chars: int = DEFAULT_MAX_CHUNK_CHARS,
    ) -> str:
        """Speak ``text``, chunked under one turn id (``isFinal`` on the last chunk).

        Returns the turn id. Not retried: a repeated chunk would be spoken twice.
        """
        turn_id = turn_id or new_turn_id()
        # Blank text is sent as is, so the service answers its own 400 "Text is required".
        chunks = chunk_text(text, max_chunk_chars) or [text]
        for index, chunk in enumerate(chunks):
            body = {"text": chunk, "turnId": turn_id, "isFinal": index == len(chunks) - 1}
            await self._post_bearer("say-text", handle, body)
        return turn_id

    async def say_audio(
        self,
        handle: SessionHandle,
        audio: str | Path | bytes,
        *,
        duration: float | None = None,
        turn_id: str | None = None,
        content_type: str | None = None,
        convert: bool = True,
    ) -> str:
        """Speak an audio file (path or bytes); returns the turn id.

        ``duration`` (seconds) is measured from the audio when not given; the service
        trusts it to animate the mouth. A file that is not MP3 (by its content, as FFmpeg
        probes it: not by its name) is sent as MP3 unless ``convert`` is false: MP3 is the
        only format the service was verified to accept (:mod:`.audio_mp3`). Not retried: each
        call queues a new turn.
        """
        if isinstance(audio, bytes):
            data, filename = audio, "audio"
        else:
            path = Path(audio)
            data, filename = await asyncio.to_thread(path.read_bytes), path.name
        try:
            if convert and not await asyncio.to_thread(is_mp3, data):
                data, measured = await asyncio.to_thread(to_mp3, data)
                filename, content_type = f"{Path(filename).stem}.mp3", "audio/mpeg"
                duration = measured if duration is None else duration
            else:
                if convert:  # MP3 by its content, whatever its name says
                    content_type = content_type or "audio/mpeg"
                if duration is None:
                    duration = await asyncio.to_thread(audio_duration, data)
            duration_field = duration_text(duration)  # (a duration <= 0 or nan: refused)
        except ValueError as exc:
            raise ConfigurationError(f"say-audio {filename}: {exc}") from None
        content_type = content_type or guess_audio_type(filename, data)
        turn_id = turn_id or new_turn_id()
        form = aiohttp.FormData()
        form.add_field("turnId", turn_id)
        form.add_field("duration", duration_field)
        form.add_field(
            "audio",
            data,
            filename=filename,
            content_type=content_type,
        )
        url = self._session_url(handle, "say-audio")
        await self._post("say-audio", url, "Bearer", handle.token, form=form)
        return turn_id

    async def interrupt(self, handle: SessionHandle) -> None:
        """Stop the current speech turn."""
        await self._post_bearer("interrupt", handle)

    # --- catalog ----------------------------------------------------------------

    async def list_catalog(
        self, type: CatalogType, *, deadline: float | None = None
    ) -> list[CatalogItem]:
        """Every catalog item of ``type`` ("Visual" avatars or "Voice" voices), all pages.

        ``deadline``: seconds from now past which no retry starts (the last error is raised).
        """
        ks = self._require_ks()
        ends = None if deadline is None else time.monotonic() + deadline
        items: dict[str, CatalogItem] = {}
        offset = 0
        while True:
            body = {
                "filter": {"typeEqual": type},
                "pager": {"offset": offset, "limit": _CATALOG_PAGE_SIZE},
            }
            retry = self.retry
            if ends is not None:
                retry = dataclasses.replace(retry, deadline=max(0.0, ends - time.monotonic()))
            data = await call_with_retry(
                functools.partial(self._post, "catalog", self.catalog_url, "KS", ks, body),
                retry,
                name="catalog",
            )
            objects = data.get("objects")
            if not isinstance(objects, list):
                raise _malformed("catalog", "objects")
            page = [_catalog_item(obj, type) for obj in objects]
            new = [item for item in page if item is not None and item.item_id not in items]
            items.update((item.item_id, item) for item in new)
            total = data.get("totalCount")
            offset += len(objects)
            # Stop on a short page, at totalCount, or if the server ignores the offset.
            if len(objects) < _CATALOG_PAGE_SIZE or not new:
                break
            if isinstance(total, int) and offset >= total:
                break
        return list(items.values())

    # --- plumbing ---------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP session if this client created it."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _require_ks(self) -> Secret:
        if self._ks is None:
            raise ConfigurationError(f"no KS: pass ks= or set ${ENV_KS}")
        return self._ks

    def _session_url(self, handle: SessionHandle, action: str) -> str:
        return f"{self.base_url}/{quote(handle.session_id, safe='')}/{action}"

    async def _post_bearer(
        self, endpoint: str, handle: SessionHandle, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = self._session_url(handle, endpoint)
        return await self._post(endpoint, url, "Bearer", handle.token, body or {})

    async def _post(
        self,
        endpoint: str,
        url: str,
        scheme: str,
        credential: Secret,
        json_body: dict[str, Any] | None = None,
        *,
        form: aiohttp.FormData | None = None,
    ) -> dict[str, Any]:
        """POST once; the JSON object of a success answer, else the typed error."""
        response = await self._http.request(
            "POST",
            url,
            label=endpoint,
            headers={"Authorization": f"{scheme} {credential.reveal()}"},
            json=json_body,
            data=form,
        )
        return _parse_answer(endpoint, response.status, response.text(), response.retry_after)


def _parse_answer(
    endpoint: str, status: int, text: str, retry_after: float | None
) -> dict[str, Any]:
    data = json_object(text)
    if 200 <= status < 300 and data is not None and data.get("success") is not False:
        return data
    error = _error_text(data, text)
    error_type = api_error_for_status(status) if status >= 400 else ApiError
    raise error_type(
        f"{endpoint} failed: HTTP {status}: {error}",
        status=status,
        error=error,
        endpoint=endpoint,
        retry_after=retry_after,
    )


def _error_text(data: dict[str, Any] | None, text: str) -> str:
    """The server's ``error`` string, else a short excerpt of the body (secrets masked)."""
    if data is not None and data.get("error") is not None:
        return _excerpt(str(data["error"]))
    return _excerpt(text) or "(empty body)"


def _excerpt(text: str) -> str:
    """Masked first, then cut: a cut secret would no longer match its mask."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= _BODY_EXCERPT_CHARS else text[:_BODY_EXCERPT_CHARS] + "..."


def _required_str(data: dict[str, Any], key: str, endpoint: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(endpoint, key)
    return value


def _malformed(endpoint: str, key: str) -> ApiError:
    return ApiError(
        f"{endpoint}: the answer has no valid {key!r}",
        status=200,
        error=f"missing {key}",
        endpoint=endpoint,
    )


def _catalog_item(obj: object, requested_type: str) -> CatalogItem | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("itemId"), str):
        return None
    attributes = obj.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    details = attributes.get(requested_type.lower())
    name = details.get("name") if isinstance(details, dict) else obj.get("name")
    return CatalogItem(
        item_id=obj["itemId"],
        type=str(obj.get("type") or requested_type),
        name=name if isinstance(name, str) else None,
        attributes=attributes,
        raw=obj,
    )
