"""KeepAlive against the emulator: ticks, survives errors, stops and reports on 404/410."""

from __future__ import annotations

import asyncio
import logging

import pytest

from avatar_rtc.api import ControlClient, KeepAlive, KeepAliveState, SessionHandle
from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import (
    ApiError,
    AuthenticationError,
    NetworkError,
    SessionEndedError,
    SessionNotFoundError,
)
from avatar_rtc.redact import Secret
from tests.support import wait_until

from .conftest import AVATAR_ID, FAST_RETRY


async def test_sends_keep_alive_every_interval(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    async with KeepAlive(client, handle, interval=0.05) as keep_alive:
        assert keep_alive.state is KeepAliveState.RUNNING
        await wait_until(lambda: keep_alive.sent >= 3, within=10.0)  # ~0.15 s; hang guard
    # Compared by value: mypy still believes the state narrowed to RUNNING above.
    assert keep_alive.state.value == "stopped"
    assert 2 <= keep_alive.sent == emu.session(handle.session_id).keep_alives
    count = emu.counters.keep_alives
    await asyncio.sleep(0.15)
    assert emu.counters.keep_alives == count  # really stopped


async def test_stops_on_410_when_ended_from_outside(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    reported: list[ApiError] = []
    keep_alive = KeepAlive(client, handle, interval=0.05, on_gone=reported.append)
    keep_alive.start()
    await asyncio.sleep(0.1)
    async with ControlClient(emu.api_url, emu.ks) as other:
        await other.end(handle)
    error = await asyncio.wait_for(keep_alive.wait_gone(), 2.0)
    assert isinstance(error, SessionEndedError) and error.status == 410
    assert keep_alive.state is KeepAliveState.GONE
    assert keep_alive.stopped_reason is error and reported == [error]
    await keep_alive.stop()
    assert keep_alive.state is KeepAliveState.GONE


async def test_stops_when_the_session_expired() -> None:
    async with Emulator(media_enabled=False, idle_timeout=0.2) as emu:
        async with ControlClient(emu.api_url, emu.ks, retry=FAST_RETRY) as client:
            handle = await client.create(AVATAR_ID)
            # An interval longer than the idle timeout: the session expires in between.
            async with KeepAlive(client, handle, interval=0.4) as keep_alive:
                error = await asyncio.wait_for(keep_alive.wait_gone(), 3.0)
        assert isinstance(error, SessionEndedError)
        assert emu.counters.sessions_expired == 1


async def test_stops_on_404(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("keep-alive", 404)
    async with KeepAlive(client, handle, interval=0.02) as keep_alive:
        assert isinstance(await asyncio.wait_for(keep_alive.wait_gone(), 2.0), SessionNotFoundError)


async def test_other_errors_are_logged_and_retried_next_tick(
    emu: Emulator, client: ControlClient, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await client.create(AVATAR_ID)
    # 401 is not retried inside keep_alive(), so each failure costs exactly one tick.
    emu.faults.fail_next("keep-alive", 401, times=2)
    async with KeepAlive(client, handle, interval=0.02) as keep_alive:
        for _ in range(100):
            if keep_alive.sent:
                break
            await asyncio.sleep(0.02)
    assert keep_alive.sent >= 1 and keep_alive.state is KeepAliveState.STOPPED
    assert keep_alive.last_error is not None and keep_alive.last_error.status == 401  # type: ignore[attr-defined]
    assert "keep-alive of session" in caplog.text


async def test_a_failing_on_gone_callback_does_not_break_the_task(
    emu: Emulator, client: ControlClient
) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("keep-alive", 410)

    def explode(error: ApiError) -> None:
        raise RuntimeError("callback bug")

    async with KeepAlive(client, handle, interval=0.02, on_gone=explode) as keep_alive:
        await asyncio.wait_for(keep_alive.wait_gone(), 2.0)
    assert keep_alive.state is KeepAliveState.GONE


@pytest.mark.slow
async def test_stop_during_a_slow_request_is_clean(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.set_latency("keep-alive", 4.0)  # the emulator's teardown waits it out
    keep_alive = KeepAlive(client, handle, interval=0.01)
    keep_alive.start()
    await wait_until(lambda: emu.counters.calls["keep-alive"] >= 1, within=10.0)  # in flight
    await asyncio.wait_for(keep_alive.stop(), 2.0)  # not the 4 s the request takes
    assert keep_alive.state is KeepAliveState.STOPPED


async def test_cannot_start_twice(client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    async with KeepAlive(client, handle, interval=1.0) as keep_alive:
        with pytest.raises(RuntimeError):
            keep_alive.start()


async def test_an_expired_token_is_said_once_and_the_session_not_called_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="avatar_rtc.api.keepalive")
    # Reporting it gone made a session with reconnection reconnect its working connection
    # in a loop (168 times in 9 s): the service session lives on until it idles out.
    async with (
        Emulator(media_enabled=False, token_ttl=0.3) as emu,  # ~24 h on the service
        ControlClient(emu.api_url, emu.ks, retry=FAST_RETRY) as client,
    ):
        handle = await client.create(AVATAR_ID)
        reported: list[ApiError] = []
        async with KeepAlive(client, handle, interval=0.1, on_gone=reported.append) as ka:
            await wait_until(lambda: emu.counters.calls["keep-alive"] >= 8, within=30)
            assert ka.token_expired and ka.state is KeepAliveState.RUNNING
    assert reported == [] and isinstance(ka.last_error, AuthenticationError)
    assert caplog.text.count("token has most likely expired") == 1
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 3, [r.getMessage() for r in warned]  # 2 failures, then the expiry


async def test_network_blips_between_401s_do_not_start_the_warning_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Expired:  # every tick 401, every 6th a network failure
        calls = 0

        async def keep_alive(self, handle: object) -> None:
            self.calls += 1
            if self.calls % 6 == 0:
                raise NetworkError("connection reset")
            raise AuthenticationError("401", status=401)

    caplog.set_level(logging.WARNING, logger="avatar_rtc.api.keepalive")
    client = Expired()
    keep_alive = KeepAlive(client, SessionHandle("s1", Secret("t")), interval=0.01)  # type: ignore[arg-type]
    async with keep_alive:
        await wait_until(lambda: client.calls >= 30, within=30)
    assert caplog.text.count("token has most likely expired") == 1  # was: after every blip
    assert caplog.text.count("failed: 401") == 2
