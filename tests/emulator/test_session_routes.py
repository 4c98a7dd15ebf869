"""init-client, say-text, say-audio, interrupt, keep-alive, end and their errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import aiohttp
import pytest

from avatar_rtc.api.models import TurnConfig
from avatar_rtc.emulator import Emulator
from avatar_rtc.redact import Secret

from .helpers import Api, control_api

NOT_FOUND = {"success": False, "error": "Session not found"}
ENDED = {"success": False, "error": "Session ended"}
BAD_TOKEN = {"success": False, "error": "Invalid or expired token"}
OK = {"success": True}


def audio_form(
    *,
    duration: str | None = "1.5",
    audio: bytes | None = b"ID3fake-mp3",
    turn_id: str | None = "t1",
) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if turn_id is not None:
        form.add_field("turnId", turn_id)
    if duration is not None:
        form.add_field("duration", duration)
    if audio is not None:
        form.add_field("audio", audio, filename="audio", content_type="audio/mpeg")
    return form


async def say_audio(api: Api, session_id: str, token: str, form: aiohttp.FormData) -> int:
    reply = await api.post(f"/{session_id}/say-audio", auth=f"Bearer {token}", data=form)
    return reply.status


# --- init-client -----------------------------------------------------------------


async def test_init_client_placeholder_turn_and_whep_url(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    reply = await api.call(session_id, token, "init-client")
    assert reply.status == 200
    assert reply.body["success"] is True
    assert reply.body["whepUrl"] == f"{emu.base_url}/v1/whep/{session_id}"
    turn = reply.body["turn"]
    assert turn["url"] == "turn.invalid"
    assert turn["username"] and turn["credential"]
    assert emu.session(session_id).state == "ready"
    # A second call is allowed and hands out the same resource.
    again = await api.call(session_id, token, "init-client")
    assert again.body == reply.body
    assert emu.session(session_id).init_client_calls == 2


async def test_init_client_without_body(api: Api, emu: Emulator) -> None:
    # The docs' cURL example posts no body at all.
    session_id, token = await api.create()
    url = f"{emu.api_url}/{session_id}/init-client"
    async with api.http.post(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200


async def test_init_client_configured_turn() -> None:
    turn = TurnConfig("turn:127.0.0.1:3478", Secret("user1"), Secret("pass1"))
    async with control_api(turn=turn) as api:
        session_id, token = await api.create()
        reply = await api.call(session_id, token, "init-client")
        assert reply.body["turn"] == {
            "url": "turn:127.0.0.1:3478",
            "username": "user1",
            "credential": "pass1",
        }


async def test_init_client_turn_rest_credentials_and_whep_url_override() -> None:
    turn = TurnConfig("127.0.0.1", Secret("unused"), Secret("unused"))
    template = "http://127.0.0.1:9/proxy/{session_id}?x=1"
    async with control_api(turn=turn, turn_secret="s3cret", whep_url_template=template) as api:
        before = time.time()
        session_id, token = await api.create()
        reply = await api.call(session_id, token, "init-client")
    assert reply.body["whepUrl"] == f"http://127.0.0.1:9/proxy/{session_id}?x=1"
    issued = reply.body["turn"]
    expiry, name = issued["username"].split(":", 1)
    assert name == session_id and int(expiry) >= before + 3600  # a fresh pair per session
    digest = hmac.new(b"s3cret", issued["username"].encode(), hashlib.sha1).digest()
    assert issued["credential"] == base64.b64encode(digest).decode()
    assert issued["url"] == "127.0.0.1"


# --- say-text ----------------------------------------------------------------------


async def test_say_text_records_the_turn(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    body = {"text": "Hello", "turnId": "turn-1", "isFinal": False}
    assert (await api.call(session_id, token, "say-text", body)).body == OK
    call = emu.session(session_id).say_text_calls[0]
    assert (call.text, call.turn_id, call.is_final) == ("Hello", "turn-1", False)


async def test_say_text_defaults_turn_id_and_is_final(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    assert (await api.call(session_id, token, "say-text", {"text": "Hi"})).status == 200
    call = emu.session(session_id).say_text_calls[0]
    assert call.turn_id.startswith("turn-")
    assert call.is_final is True


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": 5}])
async def test_say_text_requires_text(api: Api, body: dict[str, object]) -> None:
    session_id, token = await api.create()
    reply = await api.call(session_id, token, "say-text", body)
    assert (reply.status, reply.body) == (400, {"success": False, "error": "Text is required"})


async def test_say_text_without_voice_can_emulate_the_live_503() -> None:
    async with control_api(say_text_requires_voice=True) as api:
        session_id, token = await api.create(voice=False)
        assert (await api.call(session_id, token, "say-text", {"text": "x"})).status == 503
        session_id, token = await api.create(voice=True)
        assert (await api.call(session_id, token, "say-text", {"text": "x"})).status == 200


# --- say-audio ---------------------------------------------------------------------


async def test_say_audio_records_the_file(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    assert await say_audio(api, session_id, token, audio_form()) == 200
    call = emu.session(session_id).say_audio_calls[0]
    assert call.audio == b"ID3fake-mp3"
    assert call.duration == 1.5
    assert call.turn_id == "t1"
    assert call.filename == "audio"
    assert call.content_type == "audio/mpeg"


async def test_say_audio_defaults_turn_id(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    assert await say_audio(api, session_id, token, audio_form(turn_id=None)) == 200
    assert emu.session(session_id).say_audio_calls[0].turn_id


@pytest.mark.parametrize(
    "form_kw",
    [
        {"duration": None},
        {"duration": "0"},
        {"duration": "-1"},
        {"duration": "abc"},
        {"duration": "nan"},
        {"audio": None},
        {"audio": b""},
    ],
)
async def test_say_audio_validation(api: Api, form_kw: dict[str, object]) -> None:
    session_id, token = await api.create()
    assert await say_audio(api, session_id, token, audio_form(**form_kw)) == 400  # type: ignore[arg-type]


async def test_say_audio_requires_multipart(api: Api) -> None:
    session_id, token = await api.create()
    reply = await api.call(session_id, token, "say-audio", {"duration": 1})
    assert reply.status == 400


# --- interrupt, keep-alive, end -----------------------------------------------------


async def test_interrupt_and_keep_alive(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    assert (await api.call(session_id, token, "interrupt")).body == OK
    assert (await api.call(session_id, token, "interrupt")).body == OK  # idempotent
    assert (await api.call(session_id, token, "keep-alive")).body == OK
    session = emu.session(session_id)
    assert session.interrupts == 2
    assert session.keep_alives == 1
    assert emu.counters.keep_alives == 1
    assert emu.counters.calls["interrupt"] == 2


async def test_end_then_everything_is_gone(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    await api.call(session_id, token, "init-client")
    assert (await api.call(session_id, token, "end")).body == OK
    assert emu.session(session_id).state == "ended"
    assert emu.counters.sessions_ended == 1
    for action in ("init-client", "say-text", "interrupt", "keep-alive"):
        reply = await api.call(session_id, token, action, {"text": "x"})
        assert (reply.status, reply.body) == (410, ENDED), action
    # The live service answers 404 for end on an ended session (the docs say 410).
    assert (await api.call(session_id, token, "end")).body == NOT_FOUND
    assert emu.counters.sessions_ended == 1


async def test_end_on_ended_session_can_answer_410() -> None:
    async with control_api(ended_end_status=410) as api:
        session_id, token = await api.create()
        await api.call(session_id, token, "end")
        reply = await api.call(session_id, token, "end")
        assert (reply.status, reply.body) == (410, ENDED)


def test_ended_end_status_is_checked() -> None:
    with pytest.raises(ValueError):
        Emulator(ended_end_status=400)


# --- auth and lookup errors ---------------------------------------------------------


@pytest.mark.parametrize(
    "action", ["init-client", "say-text", "say-audio", "interrupt", "keep-alive", "end"]
)
async def test_unknown_session_is_404(api: Api, action: str) -> None:
    _, token = await api.create()
    reply = await api.call("no-such-session", token, action)
    assert (reply.status, reply.body) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    "auth_kind",
    ["none", "garbage", "ks", "other-session", "tampered", "non-ascii", "lowercase-bearer-ok"],
)
async def test_bearer_token_checks(api: Api, emu: Emulator, auth_kind: str) -> None:
    session_id, token = await api.create()
    _, other_token = await api.create()
    head, claims, sig = token.split(".")
    auth = {
        "none": None,
        "garbage": "Bearer not.a.jwt",
        "ks": f"KS {emu.ks}",
        "other-session": f"Bearer {other_token}",
        "tampered": f"Bearer {head}.{claims}.{sig[:-2]}AA",
        "non-ascii": f"Bearer {head}.{claims}.\u00e9{sig[1:]}",  # 500 before the fix
        "lowercase-bearer-ok": f"bearer {token}",
    }[auth_kind]
    reply = await api.post(f"/{session_id}/keep-alive", auth=auth, json_body={})
    if auth_kind == "lowercase-bearer-ok":
        assert reply.status == 200
    else:
        assert (reply.status, reply.body) == (401, BAD_TOKEN)


async def test_expired_token_is_401() -> None:
    async with control_api(token_ttl=1.0) as api:
        session_id, token = await api.create()
        assert (await api.call(session_id, token, "keep-alive")).status == 200
        await asyncio.sleep(1.1)
        reply = await api.call(session_id, token, "keep-alive")
        assert (reply.status, reply.body) == (401, BAD_TOKEN)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("POST", "say"),
        ("POST", "set-emotion"),
        ("POST", "queue-status"),
        ("POST", "status"),
        ("POST", "session-status"),
        ("GET", "keep-alive"),
        ("DELETE", "end"),
        ("POST", ""),
    ],
)
async def test_routes_the_live_service_does_not_have_are_404(
    api: Api, emu: Emulator, method: str, suffix: str
) -> None:
    session_id, token = await api.create()
    url = f"{emu.api_url}/{session_id}/{suffix}".rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    async with api.http.request(method, url, headers=headers, json={}) as resp:
        assert resp.status == 404
        assert (await resp.json())["success"] is False
