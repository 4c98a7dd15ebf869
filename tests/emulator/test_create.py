"""Create: both paths, both id fields, KS schemes, and the documented errors."""

from __future__ import annotations

import time

import pytest

from avatar_rtc.emulator import DEFAULT_VISUAL_ID, Emulator

from .helpers import Api, jwt_claims, jwt_segment

VISUAL = {"visualConfig": {"id": DEFAULT_VISUAL_ID}}


@pytest.mark.parametrize("path", ["/create", ""])
@pytest.mark.parametrize("field", ["id", "avatarId"])
async def test_create_both_paths_and_id_fields(
    api: Api, emu: Emulator, path: str, field: str
) -> None:
    body = {"visualConfig": {field: "avatar-123"}, "voiceConfig": {"id": "voice-456", "speed": 1.0}}
    reply = await api.post(path, auth=f"KS {emu.ks}", json_body=body)
    assert reply.status == 200
    assert reply.body["success"] is True
    session = emu.session(reply.body["sessionId"])
    assert session.visual_id == "avatar-123"
    assert session.voice_id == "voice-456"
    assert session.state == "created"
    assert emu.counters.sessions_created == 1
    assert emu.counters.calls["create"] == 1


@pytest.mark.parametrize("scheme", ["KS", "ks", "Ks"])
async def test_ks_scheme_is_case_insensitive(api: Api, emu: Emulator, scheme: str) -> None:
    reply = await api.post("/create", auth=f"{scheme} {emu.ks}", json_body=VISUAL)
    assert reply.status == 200


async def test_token_is_hs256_jwt_for_the_session(api: Api) -> None:
    session_id, token = await api.create()
    header = jwt_segment(token, 0)
    assert header["alg"] == "HS256"
    claims = jwt_claims(token)
    assert claims["sub"] == claims["sid"] == session_id
    assert abs(claims["exp"] - (time.time() + 86400)) < 5


async def test_each_create_is_a_new_session(api: Api) -> None:
    first, _ = await api.create()
    second, _ = await api.create()
    assert first != second


@pytest.mark.parametrize(
    ("auth", "status", "error"),
    [
        (None, 401, "Invalid Kaltura Session"),
        ("KS not-a-valid-ks", 401, "Invalid Kaltura Session"),
        ("Bearer something", 401, "Invalid Kaltura Session"),
        ("KS", 401, "Invalid Kaltura Session"),
    ],
)
async def test_create_rejects_bad_ks(api: Api, auth: str | None, status: int, error: str) -> None:
    reply = await api.post("/create", auth=auth, json_body=VISUAL)
    assert (reply.status, reply.body) == (status, {"success": False, "error": error})


async def test_create_with_non_admin_ks_is_403(api: Api, emu: Emulator) -> None:
    reply = await api.post("/create", auth=f"KS {emu.non_admin_ks}", json_body=VISUAL)
    assert reply.status == 403
    assert reply.body == {"success": False, "error": "Kaltura Session not authorized"}
    assert emu.counters.sessions_created == 0


async def test_bearer_token_does_not_create(api: Api) -> None:
    _, token = await api.create()
    reply = await api.post("/create", auth=f"Bearer {token}", json_body=VISUAL)
    assert reply.status == 401


@pytest.mark.parametrize(
    "body",
    [{}, {"visualConfig": {}}, {"visualConfig": {"id": ""}}, {"visualConfig": "x"}, [1, 2]],
)
async def test_create_requires_a_visual_id(api: Api, emu: Emulator, body: object) -> None:
    reply = await api.post("/create", auth=f"KS {emu.ks}", json_body=body)
    assert reply.status == 400
    assert reply.body["success"] is False
    assert "visualConfig" in reply.body["error"] or "JSON" in reply.body["error"]


async def test_create_rejects_bad_voice_config(api: Api, emu: Emulator) -> None:
    for voice in ("voice-1", {"id": "v", "speed": "fast"}, {"id": "v", "speed": 0}):
        body = {**VISUAL, "voiceConfig": voice}
        reply = await api.post("/create", auth=f"KS {emu.ks}", json_body=body)
        assert reply.status == 400, voice


async def test_fixed_ks() -> None:
    async with Emulator(media_enabled=False, ks="my-test-ks") as emulator:
        assert emulator.ks == "my-test-ks"
        assert emulator.non_admin_ks != "my-test-ks"
