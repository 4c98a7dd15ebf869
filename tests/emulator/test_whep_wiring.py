"""The Control API and the WHEP endpoint share sessions: WHEP serves only live sessions."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from avatar_rtc.emulator import Emulator
from tests.support import loopback_ice

from .helpers import Api


async def _offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_whep_follows_the_session_lifecycle() -> None:
    with loopback_ice():
        async with Emulator() as emu, aiohttp.ClientSession() as http:
            api = Api(emu, http)
            session_id, token = await api.create()
            whep_url = emu.whep_url(session_id)
            pc, offer = await _offer()
            headers = {"Content-Type": "application/sdp"}
            try:
                # Before init-client the session has no media: nothing to view.
                async with http.post(whep_url, data=offer, headers=headers) as resp:
                    assert resp.status == 404
                reply = await api.call(session_id, token, "init-client")
                assert reply.body["whepUrl"] == whep_url
                assert emu.session(session_id).media is not None
                async with http.post(whep_url, data=offer, headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                    assert resp.headers["Location"]
                    answer = await resp.text()
                await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                assert (await api.call(session_id, token, "say-text", {"text": "Hi"})).status == 200
                assert (await api.call(session_id, token, "end")).status == 200
                await asyncio.sleep(0)
                async with http.post(whep_url, data=offer, headers=headers) as resp:
                    assert resp.status == 404
            finally:
                await pc.close()
