"""WHEP ICE restart (RFC 9725 section 4.3.2) against a scripted server, and the emulator's
clean refusal of it by default (the service announces no PATCH).

``WhepClient.restart_ice`` speaks the protocol; ``MediaConnection.restart_ice`` restarts our
ICE agent with it (``test_ice_restart.py``).
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from avatar_rtc.api import ControlClient
from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import WhepError, WhepNotFoundError
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.whep import SDPFRAG, WhepClient
from tests.support import LOOPBACK_ICE

from .scripted_whep import ScriptedWhep, created

OFFER = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
OURS = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"  # noqa: E501
THEIRS = "a=ice-ufrag:srvU\r\na=ice-pwd:serverpasswordserverpass\r\na=candidate:1 1 udp 1 127.0.0.1 6000 typ host\r\n"  # noqa: E501


def sdpfrag(status: int, body: str = "", **headers: str) -> web.Response:
    return web.Response(status=status, body=body.encode(), content_type=SDPFRAG, headers=headers)


async def test_restart_patches_new_credentials_with_if_match_star() -> None:
    script = [sdpfrag(200, THEIRS, ETag='"e2"')]
    async with ScriptedWhep(post=[created("/whep/res/1", ETag='"e1"')], patch=script) as server:
        async with WhepClient(server.url()) as client:
            await client.offer(OFFER)
            answer = await client.restart_ice(OURS)
            assert answer == THEIRS
            assert client.etag == '"e2"'  # the new ETag replaces the old one
        (patch,) = server.requests("PATCH")
    assert patch.path == "/whep/res/1" and patch.body == OURS
    assert patch.headers["If-Match"] == '"*"'
    assert patch.headers["Content-Type"] == SDPFRAG


@pytest.mark.parametrize("status", [405, 422, 501])
async def test_a_server_that_does_not_restart_ice_is_answered_with_none(status: int) -> None:
    server = ScriptedWhep(post=[created("/whep/res/1")], patch=[sdpfrag(status)])
    async with server, WhepClient(server.url()) as client:
        await client.offer(OFFER)
        assert await client.restart_ice(OURS) is None


async def test_a_gone_resource_and_bad_answers_are_typed_errors() -> None:
    replies = [
        web.json_response({"error": "no such WHEP resource"}, status=404),
        sdpfrag(200, "a=candidate:1 1 udp 1 127.0.0.1 6000 typ host\r\n"),  # no credentials
        sdpfrag(412),
    ]
    async with ScriptedWhep(post=[created("/whep/res/1")], patch=replies) as server:
        async with WhepClient(server.url()) as client:
            await client.offer(OFFER)
            with pytest.raises(WhepNotFoundError):
                await client.restart_ice(OURS)
            with pytest.raises(WhepError, match="without the server's new ice-ufrag"):
                await client.restart_ice(OURS)
            with pytest.raises(WhepError) as precondition:
                await client.restart_ice(OURS)
            assert precondition.value.status == 412
            with pytest.raises(ValueError):  # a restart without new credentials is no restart
                await client.restart_ice("a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n")
        assert len(server.requests("PATCH")) == 3


async def _packets_received(connection: MediaConnection) -> int:
    assert connection.pc is not None
    report = await connection.pc.getStats()
    return sum(getattr(s, "packetsReceived", 0) for s in report.values() if s.type == "inbound-rtp")


async def test_emulator_refuses_an_ice_restart_cleanly_and_media_goes_on() -> None:
    async with (
        Emulator() as emulator,
        ControlClient(emulator.api_url, emulator.ks) as api,
        api.open_session("emu") as live,
    ):
        connection = MediaConnection(live.client_config.whep_url, ice=LOOPBACK_ICE)
        async with connection:
            assert await connection.whep.restart_ice(OURS) is None  # 405, nothing raised
            before = await _packets_received(connection)
            await asyncio.sleep(0.5)
            assert connection.state == "connected"
            assert await _packets_received(connection) > before
