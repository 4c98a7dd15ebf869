"""Control API routes: ``/v1/avatar-session`` and ``/v1/catalog-item/list``.

Check order for session routes, chosen so every documented error is reachable:
Bearer token (401) -> session exists (404) -> token belongs to it (401) -> session live (410).
After ``end`` the token is refused with 410 ``Session ended`` (the docs' "invalidates the
session token"; 401 would make the documented 410 unreachable). ``end`` on an ended or
expired session answers ``ended_end_status``: 404 as the live service does (the docs say 410).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..api.models import TurnConfig
from ..api.speech_input import new_turn_id
from ..http.transport import json_object
from ..redact import install_log_redaction
from . import catalog
from .auth import KsAuthority, KsVerdict, TokenAuthority
from .counters import EmulatorCounters
from .faults import FaultInjector
from .state import EmulatedSession, MediaLike, SayAudioCall, SayTextCall, SessionRegistry
from .state import SessionState as S
from .turn_rest import rest_credentials

__all__ = ["PLACEHOLDER_TURN_HOST", "ControlApi", "ControlConfig"]

logger = logging.getLogger(__name__)

# aiohttp's loggers exist now: its server logs a malformed request with the request's bytes,
# Authorization header included (see redact's module docstring).
install_log_redaction()

API_PREFIX = "/v1/avatar-session"
CATALOG_PATH = "/v1/catalog-item/list"
WHEP_PREFIX = "/v1/whep"
PLACEHOLDER_TURN_HOST = "turn.invalid"
MAX_AUDIO_BYTES = 50 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Reject(Exception):
    """Answer the current request with a documented error."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def error_response(status: int, error: str, retry_after: float | None = None) -> web.Response:
    headers = {}
    if retry_after is not None:
        # Whole seconds as HTTP says; sub-second values (fast tests) as a decimal.
        whole = retry_after == int(retry_after)
        headers["Retry-After"] = str(int(retry_after)) if whole else f"{retry_after:g}"
    return web.json_response({"success": False, "error": error}, status=status, headers=headers)


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"success": True, **fields})


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    """The JSON object body, ``{}`` when empty, None when not a JSON object."""
    return json_object(await request.read())


@dataclass
class ControlConfig:
    base_url: str
    turn: TurnConfig | None = None
    # With a secret, each session gets fresh TURN REST credentials for ``turn.url`` (as the
    # service does) instead of ``turn.username``/``turn.credential``.
    turn_secret: str | None = None
    # A WHEP URL to hand out instead of our own (``{session_id}`` is replaced): another
    # sender, or a proxy in front of ours.
    whep_url_template: str | None = None
    ended_end_status: int = 404
    # The live say-text answered 503 for sessions created without a voice (IA-SDK);
    # off by default, switch on to test a client's fallback to say-audio.
    say_text_requires_voice: bool = False


class ControlApi:
    """The Control API handlers over a :class:`SessionRegistry`."""

    def __init__(
        self,
        *,
        config: ControlConfig,
        registry: SessionRegistry,
        ks: KsAuthority,
        tokens: TokenAuthority,
        counters: EmulatorCounters,
        faults: FaultInjector,
        media_factory: Callable[[], MediaLike] | None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.ks = ks
        self.tokens = tokens
        self.counters = counters
        self.faults = faults
        self.media_factory = media_factory
        # Per session: a repeated init-client must not start a second media while one starts.
        self._init_locks: dict[str, asyncio.Lock] = {}

    # --- routing --------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        p = API_PREFIX
        app.router.add_post(f"{p}/create", self._endpoint("create", self.create))
        app.router.add_post(p, self._endpoint("create", self.create))
        actions: dict[str, Handler] = {
            "init-client": self.init_client,
            "say-text": self.say_text,
            "say-audio": self.say_audio,
            "interrupt": self.interrupt,
            "keep-alive": self.keep_alive,
            "end": self.end,
        }
        for name, handler in actions.items():
            app.router.add_post(f"{p}/{{session_id}}/{name}", self._endpoint(name, handler))
        app.router.add_post(CATALOG_PATH, self._endpoint("catalog", self.list_catalog))
        # Everything else under the API (/say, /set-emotion, /status, GET...) is a JSON 404,
        # as on the live deployment; added last so the real routes match first.
        app.router.add_route("*", f"{p}/{{tail:.*}}", self._not_found)
        app.router.add_route("*", p, self._not_found)
        app.router.add_route("*", "/v1/catalog-item/{tail:.*}", self._not_found)

    def _endpoint(self, name: str, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.counters.calls[name] += 1
            delay = self.faults.latency(name)
            if delay:
                await asyncio.sleep(delay)
            fault = self.faults.take(name)
            if fault is not None:
                logger.info("%s: injected fault %d", name, fault.status)
                return error_response(fault.status, fault.error, fault.retry_after)
            try:
                return await handler(request)
            except _Reject as reject:
                return error_response(reject.status, reject.error)
            except Exception:
                logger.exception("%s: unexpected error", name)
                return error_response(500, "Internal server error")

        return wrapped

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return error_response(404, "Not found")

    # --- auth + lookup --------------------------------------------------------

    def _check_ks(self, request: web.Request) -> None:
        verdict = self.ks.check(request.headers.get("Authorization"))
        if verdict is KsVerdict.INVALID:
            raise _Reject(401, "Invalid Kaltura Session")
        if verdict is KsVerdict.NOT_ADMIN:
            raise _Reject(403, "Kaltura Session not authorized")

    async def _session(self, request: web.Request, *, for_end: bool = False) -> EmulatedSession:
        claims = self.tokens.verify(request.headers.get("Authorization"))
        if claims is None:
            raise _Reject(401, "Invalid or expired token")
        await self.expire_idle()  # precise expiry even between sweeps
        session = self.registry.get(request.match_info["session_id"])
        if session is None:
            raise _Reject(404, "Session not found")
        if claims.get("sid") != session.session_id or claims.get("jti") != session.token_id:
            raise _Reject(401, "Invalid or expired token")
        if not session.state.is_live:
            if for_end and self.config.ended_end_status == 404:
                raise _Reject(404, "Session not found")
            raise _Reject(410, "Session ended")
        return session

    # --- lifecycle --------------------------------------------------------------

    async def expire_idle(self) -> int:
        """Expire idle sessions, release their media; the number expired."""
        expired = self.registry.due_for_expiry()
        for session in expired:
            self.counters.sessions_expired += 1
            self._init_locks.pop(session.session_id, None)
            await self._close_media(session)
        return len(expired)

    async def _close_media(self, session: EmulatedSession) -> None:
        media, session.media = session.media, None
        if media is None:
            return
        try:
            await media.close()
        except Exception:
            logger.exception("session %s: closing media failed", session.session_id)

    async def close_all(self) -> None:
        for session in self.registry:
            await self._close_media(session)
        self._init_locks.clear()

    def whep_url(self, session_id: str) -> str:
        if self.config.whep_url_template is not None:
            return self.config.whep_url_template.replace("{session_id}", session_id)
        return f"{self.config.base_url}{WHEP_PREFIX}/{session_id}"

    # --- handlers ---------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        self._check_ks(request)
        body = await _json_body(request)
        if body is None:
            raise _Reject(400, "Invalid JSON body")
        visual = body.get("visualConfig")
        visual_id = None
        if isinstance(visual, dict):
            # The docs name the field avatarId; working clients send id. Accept both.
            visual_id = visual.get("id") or visual.get("avatarId")
        if not isinstance(visual_id, str) or not visual_id.strip():
            raise _Reject(400, "visualConfig.id is required")
        voice = body.get("voiceConfig")
        if voice is not None and not isinstance(voice, dict):
            raise _Reject(400, "voiceConfig must be an object")
        if isinstance(voice, dict) and "speed" in voice:
            speed = voice["speed"]
            if isinstance(speed, bool) or not isinstance(speed, int | float) or speed <= 0:
                raise _Reject(400, "voiceConfig.speed must be a positive number")
        session = self.registry.create(visual_id, voice)
        token = self.tokens.issue(session.session_id, session.token_id)
        self.counters.sessions_created += 1
        logger.info("session %s created (visual %s)", session.session_id, visual_id)
        return _ok(sessionId=session.session_id, token=token)

    async def init_client(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        lock = self._init_locks.setdefault(session.session_id, asyncio.Lock())
        async with lock:
            if session.media is None and self.media_factory is not None:
                session.media = await self._start_media()
        if not session.state.is_live:  # ended or expired while the media was starting
            await self._close_media(session)
            raise _Reject(410, "Session ended")
        if session.turn is None:
            session.turn = self._turn_for_session(session.session_id)
        session.init_client_calls += 1
        session.state = S.READY
        return _ok(whepUrl=self.whep_url(session.session_id), turn=dict(session.turn))

    async def _start_media(self) -> MediaLike:
        assert self.media_factory is not None
        media = self.media_factory()
        try:
            await media.start()
        except BaseException:
            await media.close()
            raise
        return media

    def _turn_for_session(self, session_id: str) -> dict[str, str]:
        turn = self.config.turn
        if turn is not None and self.config.turn_secret is not None:
            username, credential = rest_credentials(self.config.turn_secret, session_id)
            return {"url": turn.url, "username": username, "credential": credential}
        if turn is not None:
            return {
                "url": turn.url,
                "username": turn.username.reveal(),
                "credential": turn.credential.reveal(),
            }
        # No TURN server: a host that cannot resolve (RFC 2606 .invalid). Clients on
        # loopback must connect with host candidates and never need it.
        return {
            "url": PLACEHOLDER_TURN_HOST,
            "username": f"emu-{secrets.token_hex(4)}",
            "credential": secrets.token_urlsafe(16),
        }

    async def say_text(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        body = await _json_body(request) or {}
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Reject(400, "Text is required")
        # The docs' cURL example sends only {"text"}: default the other two.
        turn_id = body.get("turnId")
        if turn_id is None:
            turn_id = new_turn_id()  # the docs' JS shape, as the client makes them
        if not isinstance(turn_id, str) or not turn_id:
            raise _Reject(400, "turnId must be a non-empty string")
        is_final = body.get("isFinal", True)
        if not isinstance(is_final, bool):
            raise _Reject(400, "isFinal must be a boolean")
        if self.config.say_text_requires_voice and session.voice_id is None:
            raise _Reject(503, "Service temporarily unavailable")
        session.say_text_calls.append(SayTextCall(text, turn_id, is_final))
        if session.media is not None:
            await session.media.say_text(text, turn_id=turn_id, is_final=is_final)
        return _ok()

    async def say_audio(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if not request.content_type.startswith("multipart/"):
            raise _Reject(400, "Audio file is required")
        try:
            fields, audio, filename, audio_type = await _read_form(request)
        # No boundary, a part's broken headers or charset: the client's fault, not ours.
        except (ValueError, LookupError, HttpProcessingError) as exc:
            raise _Reject(400, "Invalid multipart body") from exc
        duration = _positive_float(fields.get("duration"))
        if duration is None:
            raise _Reject(400, "Duration must be a positive number of seconds")
        if not audio:
            raise _Reject(400, "Audio file is required")
        turn_id = fields.get("turnId") or str(uuid.uuid4())
        session.say_audio_calls.append(SayAudioCall(audio, duration, turn_id, filename, audio_type))
        if session.media is not None:
            try:
                await session.media.say_audio(
                    audio, duration=duration, turn_id=turn_id, filename=filename
                )
            except ValueError as exc:
                # Undecodable audio is the caller's fault, not a server error (MP3 is the
                # only format verified live; the emulator takes whatever PyAV decodes).
                logger.info("say-audio %s: %s", session.session_id, exc)
                raise _Reject(400, "Invalid audio file") from exc
        return _ok()

    async def interrupt(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        session.interrupts += 1
        if session.media is not None:
            session.media.interrupt()
        return _ok()

    async def keep_alive(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        self.registry.touch(session)
        self.counters.keep_alives += 1
        return _ok()

    async def end(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request, for_end=True)
        session.state = S.ENDED
        self._init_locks.pop(session.session_id, None)
        self.counters.sessions_ended += 1
        await self._close_media(session)
        logger.info("session %s ended", session.session_id)
        return _ok()

    async def list_catalog(self, request: web.Request) -> web.StreamResponse:
        self._check_ks(request)
        body = await _json_body(request)
        if body is None:
            raise _Reject(400, "Invalid JSON body")
        return web.json_response(catalog.list_items(body))


async def _read_form(
    request: web.Request,
) -> tuple[dict[str, str], bytes | None, str | None, str | None]:
    """The say-audio form: its text fields, and the audio's bytes, file name and type."""
    fields: dict[str, str] = {}
    audio: bytes | None = None
    filename: str | None = None
    audio_type: str | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "audio":
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > MAX_AUDIO_BYTES:
                    raise _Reject(413, "Audio file too large")
            audio, filename = bytes(data), part.filename
            audio_type = part.headers.get("Content-Type")
        else:
            fields[part.name] = (await part.text())[:1000]
    return fields, audio, filename, audio_type


def _positive_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None
