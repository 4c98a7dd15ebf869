"""Idle expiry, fault injection and latency, the catalog."""

from __future__ import annotations

import asyncio
import time

import pytest

from avatar_rtc.emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID, Emulator

from .helpers import Api, control_api

# --- idle expiry ---------------------------------------------------------------------


async def test_idle_session_expires_and_keep_alive_prevents_it() -> None:
    async with control_api(idle_timeout=1.0) as api:
        emu = api.emu
        created = time.monotonic()  # just before: the session is created after this
        idle_id, idle_token = await api.create()
        kept_id, kept_token = await api.create()
        # The sweeper expires it without any call to it; keep-alives every 0.1 s (a tenth of the
        # timeout, room for a busy machine) keep the other one.
        while emu.session(idle_id).state != "expired":
            assert time.monotonic() - created < 10.0, "the idle session never expired"
            await asyncio.sleep(0.1)
            assert (await api.call(kept_id, kept_token, "keep-alive")).status == 200
        assert time.monotonic() - created >= 1.0
        assert emu.counters.sessions_expired == 1
        reply = await api.call(idle_id, idle_token, "say-text", {"text": "hi"})
        assert (reply.status, reply.body) == (410, {"success": False, "error": "Session ended"})
        assert (await api.call(idle_id, idle_token, "end")).status == 404
        assert emu.session(kept_id).state == "created"
        assert emu.counters.sessions_ended == 0


async def test_other_calls_do_not_refresh_idle_timer() -> None:
    async with control_api(idle_timeout=0.6) as api:
        created = time.monotonic()  # just before: the session is created after this
        session_id, token = await api.create()
        assert (await api.call(session_id, token, "interrupt")).status == 200
        # Interrupts every 0.1 s: were they refreshing the timer, it would never expire.
        while (await api.call(session_id, token, "interrupt")).status == 200:
            assert time.monotonic() - created < 10.0, "interrupts kept the session alive"
            await asyncio.sleep(0.1)
        assert (await api.call(session_id, token, "interrupt")).status == 410
        assert time.monotonic() - created >= 0.6


# --- faults --------------------------------------------------------------------------


async def test_fail_next_n_calls_then_recover(api: Api, emu: Emulator) -> None:
    emu.faults.fail_next("create", 503, times=2)
    statuses = []
    for _ in range(3):
        reply = await api.post(
            "/create", auth=f"KS {emu.ks}", json_body={"visualConfig": {"id": "a"}}
        )
        statuses.append(reply.status)
    assert statuses == [503, 503, 200]
    assert emu.counters.calls["create"] == 3
    assert emu.counters.sessions_created == 1


async def test_fault_error_string_and_retry_after(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    emu.faults.fail_next("keep-alive", 429, error="Slow down", retry_after=2)
    emu.faults.fail_next("keep-alive", 500)
    reply = await api.call(session_id, token, "keep-alive")
    assert (reply.status, reply.body) == (429, {"success": False, "error": "Slow down"})
    assert reply.headers["Retry-After"] == "2"
    reply = await api.call(session_id, token, "keep-alive")
    assert (reply.status, reply.body["error"]) == (500, "Internal server error")
    assert (await api.call(session_id, token, "keep-alive")).status == 200
    assert emu.counters.keep_alives == 1


async def test_faults_apply_to_their_endpoint_only(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    emu.faults.fail_next("say-text", 503)
    assert (await api.call(session_id, token, "interrupt")).status == 200
    assert (await api.call(session_id, token, "say-text", {"text": "a"})).status == 503
    assert emu.session(session_id).say_text_calls == []


@pytest.mark.slow
async def test_latency_per_endpoint_and_global(api: Api, emu: Emulator) -> None:
    session_id, token = await api.create()
    # Latencies long enough that a call without one (milliseconds, more on a busy machine)
    # stays far below: "without" is checked against half of them.
    emu.faults.set_latency("interrupt", 2.0)
    start = time.monotonic()
    await api.call(session_id, token, "interrupt")
    assert time.monotonic() - start >= 1.98
    start = time.monotonic()
    await api.call(session_id, token, "keep-alive")
    assert time.monotonic() - start < 1.0
    emu.faults.set_latency(None, 1.0)
    start = time.monotonic()
    await api.call(session_id, token, "keep-alive")
    assert time.monotonic() - start >= 0.98
    emu.faults.clear()
    start = time.monotonic()
    await api.call(session_id, token, "interrupt")
    assert time.monotonic() - start < 0.5


def test_fault_arguments_are_checked() -> None:
    emu = Emulator(media_enabled=False)
    with pytest.raises(ValueError):
        emu.faults.fail_next("say", 503)
    with pytest.raises(ValueError):
        emu.faults.fail_next("create", 200)
    with pytest.raises(ValueError):
        emu.faults.fail_next("create", 503, times=0)
    with pytest.raises(ValueError):
        emu.faults.set_latency("nope", 1.0)


# --- catalog -------------------------------------------------------------------------


async def list_catalog(api: Api, auth: str | None, body: object) -> tuple[int, dict[str, object]]:
    reply = await api.post(f"{api.emu.base_url}/v1/catalog-item/list", auth=auth, json_body=body)
    return reply.status, reply.body


async def test_catalog_visuals_and_voices(api: Api, emu: Emulator) -> None:
    pager = {"offset": 0, "limit": 100}
    status, body = await list_catalog(
        api, f"KS {emu.ks}", {"filter": {"typeEqual": "Visual"}, "pager": pager}
    )
    assert status == 200
    visuals = body["objects"]
    assert isinstance(visuals, list) and body["totalCount"] == len(visuals) >= 2
    assert {v["type"] for v in visuals} == {"Visual"}
    assert DEFAULT_VISUAL_ID in {v["itemId"] for v in visuals}
    assert all(v["attributes"]["visual"]["name"] for v in visuals)

    status, body = await list_catalog(
        api, f"ks {emu.ks}", {"filter": {"typeEqual": "Voice"}, "orderBy": "-createdAt"}
    )
    voices = body["objects"]
    assert isinstance(voices, list)
    assert DEFAULT_VOICE_ID in {v["itemId"] for v in voices}
    assert all(v["attributes"]["voice"]["language"] for v in voices)
    created = [v["createdAt"] for v in voices]
    assert created == sorted(created, reverse=True)
    assert emu.counters.calls["catalog"] == 2


async def test_catalog_pager(api: Api, emu: Emulator) -> None:
    body = {"filter": {"typeEqual": "Visual"}, "pager": {"offset": 1, "limit": 1}}
    status, reply = await list_catalog(api, f"KS {emu.ks}", body)
    assert status == 200
    assert len(reply["objects"]) == 1  # type: ignore[arg-type]
    assert reply["totalCount"] >= 2  # type: ignore[operator]


async def test_catalog_auth(api: Api, emu: Emulator) -> None:
    assert (await list_catalog(api, None, {}))[0] == 401
    assert (await list_catalog(api, "KS wrong", {}))[0] == 401
    assert (await list_catalog(api, f"KS {emu.non_admin_ks}", {}))[0] == 403
