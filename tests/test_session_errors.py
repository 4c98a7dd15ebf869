"""A session that cannot pick an avatar reports the real cause, not a configuration error."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest

from avatar_rtc.api import ControlClient, RetryPolicy
from avatar_rtc.api.session_scope import CREATE_GRACE
from avatar_rtc.emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID, Emulator
from avatar_rtc.errors import (
    AuthenticationError,
    ConfigurationError,
    NetworkError,
    RequestTimeoutError,
    ServerError,
)
from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import Secret
from avatar_rtc.session import ENV_AVATAR_ID, ENV_VOICE_ID, AvatarSession
from avatar_rtc.session_stats import SessionState
from tests.support import emulator_options


@pytest.fixture(autouse=True)
def no_avatar_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_AVATAR_ID, raising=False)  # the catalog must be asked


async def test_wrong_ks_without_avatar_id_is_an_authentication_error() -> None:
    async with Emulator(media_enabled=False) as emu:
        session = AvatarSession(SessionOptions(api_url=emu.api_url, ks=Secret("not-the-right-ks")))
        with pytest.raises(AuthenticationError) as info:
            await session.start()
        await session.close()
    assert info.value.status == 401 and info.value.endpoint == "catalog"
    assert not isinstance(info.value, ConfigurationError)
    assert any(ENV_AVATAR_ID in note for note in getattr(info.value, "__notes__", []))


async def test_unreachable_api_without_avatar_id_is_a_network_error() -> None:
    with socket.socket() as sock:  # free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/avatar-session"
    async with ControlClient(url, "ks-abcdef", retry=RetryPolicy(max_attempts=1)) as client:
        session = AvatarSession(client=client)
        with pytest.raises(NetworkError, match="catalog"):
            await session.start()
        await session.close()


async def test_say_text_503_on_a_session_without_a_voice_says_to_give_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VOICE_ID, raising=False)
    async with Emulator(say_text_requires_voice=True) as emu:  # as the live service was seen
        options = emulator_options(emu, avatar_id=DEFAULT_VISUAL_ID)
        async with AvatarSession(options) as session:
            with pytest.raises(ServerError, match="created without a voice: give a voice id"):
                await session.say("Hello")
        async with AvatarSession(replace(options, voice_id=DEFAULT_VOICE_ID)) as session:
            assert await session.say("Hello")  # with a voice: no 503


@pytest.mark.parametrize(
    ("avatar_id", "stage"),
    [(None, "the catalog"), ("e0a1e0a1e0a1e0a1e0a10001", "creating the session")],
)
async def test_a_control_api_that_never_answers_fails_within_connect_timeout(
    avatar_id: str | None, stage: str
) -> None:
    """A dead network at start: each request waited its own 15 s, the catalog's retries 65 s in
    all, whatever connect_timeout said (1 s here). A create given up on is waited for
    CREATE_GRACE more (to end a session it may have opened), no longer."""
    with socket.socket() as listening:  # connections complete in the backlog, nothing answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}/v1/avatar-session"
        options = SessionOptions(api_url=url, ks=Secret("ks-abcdef"), avatar_id=avatar_id,
                                 connect_timeout=1.0)  # fmt: skip
        session = AvatarSession(options)
        t0 = time.monotonic()
        with pytest.raises(RequestTimeoutError, match=f"connect_timeout .1 s.: {stage}"):
            await session.start()
        elapsed = time.monotonic() - t0
        await session.close()
    assert session.state is SessionState.FAILED
    assert elapsed < 1.0 + CREATE_GRACE + 4.0  # (one request's own timeout is 15 s)


async def test_a_catalog_answering_503_within_connect_timeout_is_that_error() -> None:
    """The catalog's retries stop in time (a Retry-After past connect_timeout ends them): the
    service's answer is raised, not "did not answer" (the retry's sleep was cancelled)."""
    async with Emulator(media_enabled=False) as emu:
        emu.faults.fail_next("catalog", 503, times=10, retry_after=3.0)
        session = AvatarSession(SessionOptions(api_url=emu.api_url, ks=Secret(emu.ks),
                                               connect_timeout=2.0))  # fmt: skip
        with pytest.raises(ServerError, match="503"):
            await session.start()
        await session.close()
        assert emu.counters.calls["catalog"] == 1


async def test_a_create_that_answers_401_after_connect_timeout_is_an_authentication_error() -> None:
    """A create given up on by connect_timeout is still waited for (CREATE_GRACE, to end what
    it opened); what it answered meanwhile is the error (a refused KS), not "no answer"."""
    async with Emulator(media_enabled=False) as emu:
        emu.faults.set_latency("create", 1.5)
        emu.faults.fail_next("create", 401)
        options = SessionOptions(api_url=emu.api_url, ks=Secret(emu.ks),
                                 avatar_id=DEFAULT_VISUAL_ID, connect_timeout=0.5)  # fmt: skip
        session = AvatarSession(options)
        with pytest.raises(AuthenticationError):
            await session.start()
        await session.close()
        assert emu.counters.sessions_created == 0
