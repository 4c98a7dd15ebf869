"""The session's media: created at init-client, fed by say-*/interrupt, closed on end/expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from avatar_rtc.emulator import Emulator
from tests.support import wait_until

from .helpers import Api, FakeMedia


@pytest.fixture
async def fake_api() -> AsyncIterator[Api]:
    FakeMedia.instances.clear()
    async with (
        Emulator(media_factory=FakeMedia, idle_timeout=0.4) as emu,
        aiohttp.ClientSession() as http,
    ):
        yield Api(emu, http)


async def test_media_lifecycle_on_end(fake_api: Api) -> None:
    api = fake_api
    session_id, token = await api.create()
    assert api.emu.session(session_id).media is None  # not before init-client
    await api.call(session_id, token, "init-client")
    await api.call(session_id, token, "init-client")
    assert len(FakeMedia.instances) == 1  # one media per session, however often init runs
    media = FakeMedia.instances[0]
    assert api.emu.session(session_id).media is media

    await api.call(session_id, token, "say-text", {"text": "Hi", "turnId": "a", "isFinal": True})
    form = aiohttp.FormData()
    form.add_field("turnId", "b")
    form.add_field("duration", "0.5")
    form.add_field("audio", b"RIFFxxxx", filename="x.wav", content_type="audio/wav")
    await api.post(f"/{session_id}/say-audio", auth=f"Bearer {token}", data=form)
    await api.call(session_id, token, "interrupt")
    await api.call(session_id, token, "end")
    assert media.events == [
        ("start",),
        ("say_text", "Hi", "a", True),
        ("say_audio", 8, 0.5, "b", "x.wav"),
        ("interrupt",),
        ("close",),
    ]
    assert api.emu.session(session_id).media is None


async def test_media_closed_on_expiry(fake_api: Api) -> None:
    api = fake_api
    session_id, token = await api.create()
    await api.call(session_id, token, "init-client")
    # Idle timeout 0.4 s, then the sweeper; the wait only guards a hang.
    await wait_until(lambda: FakeMedia.instances[0].events[-1] == ("close",), within=10.0)
    assert api.emu.counters.sessions_expired == 1


async def test_media_closed_on_stop() -> None:
    FakeMedia.instances.clear()
    async with Emulator(media_factory=FakeMedia) as emu, aiohttp.ClientSession() as http:
        api = Api(emu, http)
        session_id, token = await api.create()
        await api.call(session_id, token, "init-client")
    assert FakeMedia.instances[0].events[-1] == ("close",)


async def test_media_failure_is_a_500(fake_api: Api) -> None:
    api = fake_api
    session_id, token = await api.create()
    await api.call(session_id, token, "init-client")

    async def broken(text: str, *, turn_id: str, is_final: bool) -> None:
        raise RuntimeError("boom")

    FakeMedia.instances[0].say_text = broken  # type: ignore[method-assign]
    reply = await api.call(session_id, token, "say-text", {"text": "x"})
    assert (reply.status, reply.body) == (500, {"success": False, "error": "Internal server error"})


async def test_undecodable_audio_is_a_400(fake_api: Api) -> None:
    api = fake_api
    session_id, token = await api.create()
    await api.call(session_id, token, "init-client")

    async def reject(audio: bytes, *, duration: float, turn_id: str, filename: str | None) -> None:
        raise ValueError("not audio")

    FakeMedia.instances[0].say_audio = reject  # type: ignore[method-assign]
    form = aiohttp.FormData()
    form.add_field("duration", "1")
    form.add_field("audio", b"garbage", filename="audio", content_type="audio/mpeg")
    reply = await api.post(f"/{session_id}/say-audio", auth=f"Bearer {token}", data=form)
    assert (reply.status, reply.body) == (400, {"success": False, "error": "Invalid audio file"})
