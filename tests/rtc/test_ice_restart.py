"""ICE restart through WHEP PATCH, in place, against the emulator (``ice_restart=True``).

The restart of a live session: a new path (new local socket, new credentials), the same peer
connection and DTLS session, the same stream iterator; the receive fast path takes the new
socket, the old one is closed. The emulator's PATCH resource: statuses by RFC 9725 / the WHEP
draft. The TURN-restart case (a new allocation) is in ``test_reconnect_outage.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import aiohttp
import pytest

from avatar_rtc.api import ControlClient
from avatar_rtc.emulator import Emulator
from avatar_rtc.media.formats import VideoFormat
from avatar_rtc.rtc import datagram_batch
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.sdp_candidates import SDPFRAG_TYPE, parse_sdpfrag
from avatar_rtc.session import AvatarSession
from tests.support import LOOPBACK_ICE, emulator_options, wait_until

pytestmark = pytest.mark.timeout(60)


def _port_free(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


@pytest.mark.slow
async def test_a_live_session_restarts_ice_and_its_stream_goes_on() -> None:
    async with Emulator(ice_restart=True) as emulator:
        options = emulator_options(emulator, detect_speech=False)
        async with AvatarSession(options) as session:
            await session.wait_first_frame(20)
            frames: list[float] = []

            async def consume() -> None:
                async for frame in session.video(VideoFormat(pixel_format=None)):
                    frames.append(frame.presentation_time)

            consumer = asyncio.ensure_future(consume())
            connection = session.connection
            assert connection is not None and connection.pc is not None
            assert connection.can_restart_ice
            pc = connection.pc
            dtls: Any = pc.getTransceivers()[0].receiver.transport
            batch = datagram_batch._BATCHES[dtls]
            before = connection.selected_pair()
            assert before is not None
            resource = connection.whep.location
            await wait_until(lambda: len(frames) >= 10, 10)

            for restart in (1, 2):
                assert await connection.restart_ice()
                after = connection.selected_pair()
                assert after is not None and after.local_address != before.local_address
                assert after.remote_address == before.remote_address  # the server kept its own
                assert connection.pc is pc and connection.state == "connected"
                fast, seen = batch.fast_packets, len(frames)
                # The same iterator goes on; RTP from the new socket takes the fast path.
                await wait_until(lambda: len(frames) >= seen + 25, 10)  # noqa: B023
                assert batch.fast_packets > fast + 25
                assert not batch.closed and datagram_batch._BATCHES[dtls] is batch
                # The replaced socket is closed (its port free again).
                old = before.local_address
                await wait_until(lambda: _port_free(old), 5)  # noqa: B023
                before = after
                assert session.session_id is not None
                viewers = emulator.avatar_media(session.session_id).viewers.values()
                assert [v.ice_restarts for v in viewers] == [restart]  # one viewer still
                assert connection.whep.location == resource  # no new POST

            assert all(b > a for a, b in itertools.pairwise(frames))
            stats = session.stats()
            assert stats.reconnect.outages == 0  # nothing was lost
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def test_without_patch_nothing_is_tried() -> None:
    async with (
        Emulator() as emulator,
        ControlClient(emulator.api_url, emulator.ks) as api,
        api.open_session("emu") as live,
    ):
        connection = MediaConnection(live.client_config.whep_url, ice=LOOPBACK_ICE)
        async with connection:
            assert not connection.can_restart_ice  # the 201 had no Accept-Patch
            pair = connection.selected_pair()
            assert not await connection.restart_ice()
            assert connection.selected_pair() == pair


async def test_the_emulators_patch_statuses() -> None:
    async with (
        Emulator(ice_restart=True) as emulator,
        ControlClient(emulator.api_url, emulator.ks) as api,
        api.open_session("emu") as live,
        aiohttp.ClientSession() as http,
    ):
        connection = MediaConnection(live.client_config.whep_url, ice=LOOPBACK_ICE)
        async with connection:
            whep = connection.whep
            assert whep.location is not None and whep.etag is not None
            url = whep.location
            ours = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"  # noqa: E501
            frag = {"Content-Type": SDPFRAG_TYPE}

            async def patch(body: str, **headers: str) -> tuple[int, str, Any]:
                async with http.patch(url, data=body, headers=headers) as resp:
                    return resp.status, await resp.text(), resp.headers

            assert (await patch(ours, **{"Content-Type": "application/sdp", "If-Match": "*"}))[
                0
            ] == 415
            assert (await patch(ours, **frag))[0] == 428  # If-Match is required
            assert (await patch(ours, **frag, **{"If-Match": '"stale"'}))[0] == 412
            # With the current ETag: a trickle, ignored (the offer held every candidate).
            assert (await patch(ours, **frag, **{"If-Match": whep.etag}))[0] == 204
            no_candidates = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
            assert (await patch(no_candidates, **frag, **{"If-Match": "*"}))[0] == 400
            status, body, headers = await patch(ours, **frag, **{"If-Match": "*"})
            assert status == 200 and headers["Content-Type"] == SDPFRAG_TYPE
            answer = parse_sdpfrag(body)
            assert answer.ice_ufrag and answer.ice_pwd and answer.all_candidates()
            assert headers["ETag"] not in (None, whep.etag)  # a new ETag
            unknown = url.rsplit("/", 1)[0] + "/" + "0" * 32
            async with http.patch(unknown, data=ours, headers={**frag, "If-Match": "*"}) as r:
                assert r.status == 404
            async with http.options(live.client_config.whep_url) as resp:
                assert "PATCH" in resp.headers["Access-Control-Allow-Methods"]
