"""The emulator's WHEP endpoint against a plain aiortc viewer on loopback."""

from __future__ import annotations

import re

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from avatar_rtc.emulator.media import MARKERS, AvatarMedia, AvatarMediaOptions
from tests.emulator.media.harness import connect_viewer, delete, whep_server
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)


def _check_markers(rgb: np.ndarray) -> None:
    for marker in MARKERS:
        mean = rgb[marker.region(inset=8)].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array(marker.rgb)).max() < 20, (marker.name, mean)


async def test_statuses_location_and_teardown() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    async with whep_server({"s1": media}) as srv:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                srv.url("s1"), data="v=0\r\n", headers={"Content-Type": "text/plain"}
            ) as resp:
                assert resp.status == 415
            async with http.options(srv.url("s1")) as resp:
                assert resp.status == 204
                assert "POST" in resp.headers["Allow"]

        assert (await connect_viewer(srv.url("unknown"))).status == 404

        viewer = await connect_viewer(srv.url("s1"))
        assert viewer.status == 201
        assert viewer.content_type == "application/sdp"
        assert viewer.location is not None
        assert re.fullmatch(r"/v1/whep/s1/[0-9a-f]{32}", viewer.location)
        answer = viewer.answer
        assert answer.count("a=sendonly") == 2
        assert "H264/90000" in answer and "VP8" not in answer
        assert re.search(r"opus/48000/2", answer, re.IGNORECASE)
        assert "a=candidate:" in answer  # non-trickle: candidates are in the answer
        # The service's egress is the DTLS server: the viewer, offering actpass, the client.
        assert re.findall(r"a=setup:\w+", answer) == ["a=setup:passive"] * 2

        # One viewer per stream.
        assert (await connect_viewer(srv.url("s1"))).status == 409

        await viewer.wait_video(5)
        await viewer.wait_audio(10)
        assert {(s.width, s.height) for s in viewer.video} == {(512, 512)}
        assert viewer.video[0].key_frame
        assert viewer.last_rgb is not None
        _check_markers(viewer.last_rgb)
        assert {(s.sample_rate, s.channels) for s in viewer.audio} == {(48000, 2)}

        url = srv.base_url + viewer.location
        assert await delete(url) == 204
        assert await delete(url) == 404
        assert media.viewers == {}
        await viewer.close()

        # The slot is free again.
        second = await connect_viewer(srv.url("s1"))
        assert second.status == 201
        await second.wait_video(1)
        await second.close()

        await media.close()
        assert (await connect_viewer(srv.url("s1"))).status == 404


async def test_vp8_and_frame_rate() -> None:
    media = AvatarMedia(AvatarMediaOptions(video_codec="VP8", fps=30, tts="builtin"))
    async with whep_server({"s": media}) as srv:
        viewer = await connect_viewer(srv.url("s"))
        assert viewer.status == 201
        assert "VP8/90000" in viewer.answer and "H264" not in viewer.answer
        await viewer.wait_video(31)
        assert {(s.width, s.height) for s in viewer.video} == {(512, 512)}
        assert viewer.last_rgb is not None
        _check_markers(viewer.last_rgb)
        steps = [b.pts - a.pts for a, b in zip(viewer.video[:-1], viewer.video[1:], strict=True)]
        # 30 fps on the 90 kHz clock (a loaded machine may make the emulator skip a frame).
        assert all(step % 3000 == 0 and step > 0 for step in steps)
        assert sorted(steps)[len(steps) // 2] == 3000
        await viewer.close()


async def test_bad_offer_is_400() -> None:
    media = AvatarMedia(AvatarMediaOptions(tts="builtin"))
    async with whep_server({"s": media}) as srv, aiohttp.ClientSession() as http:
        async with http.post(
            srv.url("s"), data="hello", headers={"Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 400
        # No codec in common: the viewer only takes VP8, the avatar sends H264.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/VP8"])
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(
            srv.url("s"), data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 400
        await pc.close()
        assert media.viewers == {}


async def test_viewer_slot_freed_without_delete() -> None:
    # Long enough that the never-connecting viewer below is still there when checked.
    media = AvatarMedia(AvatarMediaOptions(tts="builtin", viewer_connect_timeout=2.0))
    async with whep_server({"s": media}) as srv:
        # A viewer that goes away without DELETE (DTLS close): the slot frees itself.
        viewer = await connect_viewer(srv.url("s"))
        await viewer.wait_video(2)
        await viewer.close()
        await wait_until(lambda: not media.viewers, 10.0)  # hang guard

        # A viewer that posts an offer and never connects: dropped after the connect timeout.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                srv.url("s"),
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            assert resp.status == 201
        await pc.close()
        assert media.viewers
        await wait_until(lambda: not media.viewers, 10.0)  # the 2 s connect timeout; hang guard
        assert (await connect_viewer(srv.url("s"))).status == 201
