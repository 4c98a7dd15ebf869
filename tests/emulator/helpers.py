"""Shared helpers of the emulator tests: a small HTTP client for the Control API."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from avatar_rtc.emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID, Emulator


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Api:
    """Raw HTTP calls against an emulator (no client library: we test the server)."""

    def __init__(self, emulator: Emulator, http: aiohttp.ClientSession) -> None:
        self.emu = emulator
        self.http = http

    async def post(
        self, path: str, *, auth: str | None = None, json_body: Any = None, **kw: Any
    ) -> Reply:
        headers = dict(kw.pop("headers", {}))
        if auth is not None:
            headers["Authorization"] = auth
        url = path if path.startswith("http") else f"{self.emu.api_url}{path}"
        if json_body is not None:
            kw["json"] = json_body
        async with self.http.post(url, headers=headers, **kw) as resp:
            return Reply(resp.status, await resp.json(content_type=None), dict(resp.headers))

    async def create(self, *, voice: bool = True, path: str = "/create") -> tuple[str, str]:
        body: dict[str, Any] = {"visualConfig": {"id": DEFAULT_VISUAL_ID}}
        if voice:
            body["voiceConfig"] = {"id": DEFAULT_VOICE_ID}
        reply = await self.post(path, auth=f"KS {self.emu.ks}", json_body=body)
        assert reply.status == 200, reply
        return reply.body["sessionId"], reply.body["token"]

    async def call(self, session_id: str, token: str, action: str, body: Any = None) -> Reply:
        return await self.post(
            f"/{session_id}/{action}",
            auth=f"Bearer {token}",
            json_body={} if body is None else body,
        )


@contextlib.asynccontextmanager
async def control_api(**options: Any) -> AsyncIterator[Api]:
    """An :class:`Api` on its own media-less emulator built with ``options`` (``api.emu``)."""
    async with (
        Emulator(media_enabled=False, **options) as emulator,
        aiohttp.ClientSession() as http,
    ):
        yield Api(emulator, http)


def jwt_segment(token: str, index: int) -> dict[str, Any]:
    """The decoded JSON of segment ``index`` (0 header, 1 claims) of a JWT, unverified."""
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def jwt_claims(token: str) -> dict[str, Any]:
    return jwt_segment(token, 1)


class FakeMedia:
    """Records what the emulator asks of a session's media."""

    instances: list[FakeMedia] = []

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        FakeMedia.instances.append(self)

    async def start(self) -> None:
        self.events.append(("start",))

    async def say_text(self, text: str, *, turn_id: str, is_final: bool) -> None:
        self.events.append(("say_text", text, turn_id, is_final))

    async def say_audio(
        self, audio: bytes, *, duration: float, turn_id: str, filename: str | None
    ) -> None:
        self.events.append(("say_audio", len(audio), duration, turn_id, filename))

    def interrupt(self) -> None:
        self.events.append(("interrupt",))

    async def close(self) -> None:
        self.events.append(("close",))
