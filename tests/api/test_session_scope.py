"""open_session: create + init-client + keep-alive, and end on every exit path."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from avatar_rtc.api import ControlClient, KeepAliveState, LiveSession, session_scope
from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import ApiError, ServerError
from tests.support import wait_until

from .conftest import AVATAR_ID, VOICE_ID


async def test_normal_exit_ends_the_session(
    emu: Emulator, client: ControlClient, wav_file: Path
) -> None:
    async with client.open_session(AVATAR_ID, VOICE_ID, keep_alive_interval=0.05) as live:
        assert isinstance(live, LiveSession)
        assert live.client_config.whep_url == emu.whep_url(live.session_id)
        assert live.handle.session_id == live.session_id
        assert live.keep_alive.state is KeepAliveState.RUNNING
        await live.say_text("Hello there.")
        await live.say_audio(wav_file)
        await live.interrupt()
        await wait_until(lambda: emu.session(live.session_id).keep_alives >= 2, within=10.0)
    session = emu.session(live.session_id)
    assert session.voice_id == VOICE_ID
    assert (len(session.say_text_calls), len(session.say_audio_calls), session.interrupts) == (
        1,
        1,
        1,
    )
    assert session.keep_alives >= 2
    assert live.ended and live.keep_alive.state.value == "stopped"
    assert emu.counters.sessions_ended == 1


async def test_exception_ends_the_session(emu: Emulator, client: ControlClient) -> None:
    with pytest.raises(ZeroDivisionError):
        async with client.open_session(AVATAR_ID):
            _ = 1 / 0
    assert emu.counters.sessions_ended == 1


async def test_cancellation_ends_the_session(emu: Emulator, client: ControlClient) -> None:
    entered = asyncio.Event()

    async def use_session() -> None:
        async with client.open_session(AVATAR_ID, keep_alive_interval=0.05):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(use_session())
    await asyncio.wait_for(entered.wait(), 5)
    emu.faults.set_latency("end", 0.2)  # the end request is still in flight when cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emu.counters.sessions_ended == 1


async def test_cancellation_during_end_still_ends(emu: Emulator, client: ControlClient) -> None:
    async def use_session() -> None:
        async with client.open_session(AVATAR_ID):
            pass

    emu.faults.set_latency("end", 0.5)
    task = asyncio.create_task(use_session())
    for _ in range(500):  # until the end request is being served
        if emu.counters.calls["end"]:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emu.counters.sessions_ended == 1


async def test_cancellation_during_create_ends_what_it_opened(
    emu: Emulator, client: ControlClient
) -> None:
    emu.faults.set_latency("create", 1.0)

    async def use_session() -> None:
        async with client.open_session(AVATAR_ID):
            pytest.fail("the body must not run")

    task = asyncio.create_task(use_session())
    await wait_until(lambda: emu.counters.calls["create"] >= 1, within=10.0)  # being served
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emu.counters.sessions_created == 1
    assert emu.counters.sessions_ended == 1
    assert emu.counters.calls["init-client"] == 0


async def test_init_client_failure_ends_the_session(emu: Emulator, client: ControlClient) -> None:
    emu.faults.fail_next("init-client", 500)
    with pytest.raises(ServerError):
        async with client.open_session(AVATAR_ID):
            pytest.fail("the body must not run")
    assert emu.counters.sessions_created == emu.counters.sessions_ended == 1


async def test_create_failure_propagates(emu: Emulator, client: ControlClient) -> None:
    emu.faults.fail_next("create", 503)
    with pytest.raises(ServerError):
        async with client.open_session(AVATAR_ID):
            pytest.fail("the body must not run")
    assert emu.counters.calls["end"] == 0


async def test_explicit_end_is_not_repeated(emu: Emulator, client: ControlClient) -> None:
    async with client.open_session(AVATAR_ID) as live:
        assert await live.end() is True
        assert await live.end() is False
    assert emu.counters.calls["end"] == 1


async def test_failing_end_does_not_hide_the_body_exception(
    emu: Emulator, client: ControlClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(KeyError):
        async with client.open_session(AVATAR_ID):
            emu.faults.fail_next("end", 500, times=10)
            raise KeyError("from the body")
    assert "could not end session" in caplog.text


async def test_gone_session_is_reported(emu: Emulator, client: ControlClient) -> None:
    reported: list[ApiError] = []
    async with client.open_session(
        AVATAR_ID, keep_alive_interval=0.05, on_gone=reported.append
    ) as live:
        async with ControlClient(emu.api_url, emu.ks) as other:
            await other.end(live.handle)
        await asyncio.wait_for(live.keep_alive.wait_gone(), 2.0)
        assert live.gone and reported
    assert emu.counters.calls["end"] == 2  # ours answered 404 "already gone", quietly


async def test_an_unanswered_end_is_given_up_after_its_bound(
    emu: Emulator,
    client: ControlClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Over a dead network `end` and its retries took 64 s of every close. (8 s, not an hour:
    # the emulator's shutdown waits for the request it holds.)
    monkeypatch.setattr(session_scope, "END_TIMEOUT", 0.3)
    emu.faults.set_latency("end", 8.0)
    started = time.monotonic()
    async with client.open_session(AVATAR_ID):
        pass
    assert time.monotonic() - started < 4.0  # the bound, not the 8 s (half: a busy machine)
    assert "could not end session" in caplog.text and "within 0.3 s" in caplog.text
