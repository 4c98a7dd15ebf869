"""A session that cannot pick an avatar reports the real cause, not a configuration error."""

from __future__ import annotations

import socket

import pytest

from avatar_rtc.api import ControlClient, RetryPolicy
from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import AuthenticationError, ConfigurationError, NetworkError
from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import Secret
from avatar_rtc.session import ENV_AVATAR_ID, AvatarSession


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
