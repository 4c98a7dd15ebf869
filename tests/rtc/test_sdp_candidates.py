"""Remote candidates reach ICE whatever m= section of the BUNDLE group lists them.

aiortc alone keeps only the last bundled section's candidates (shown below, so that a fixed
aiortc is noticed); ``sdp_candidates.normalize_answer`` and the connection layer fix that,
and also cover ICE-lite, TCP-only and trickled (WHEP PATCH) answers.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc import multi_turn
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.sdp_candidates import (
    candidate_key,
    local_sdpfrag,
    normalize_answer,
    parse_sdpfrag,
    unpairable_addresses,
)
from tests.support import LOOPBACK_ICE

from . import answer_shapes
from .scripted_whep import ScriptedWhep, created
from .whep_sender import AiortcWhepSender

C1 = "1 1 udp 2130706431 127.0.0.1 40001 typ host"
C2 = "2 1 udp 2130706431 127.0.0.1 40002 typ host"
T1 = "3 1 tcp 1518280447 127.0.0.1 40003 typ host tcptype passive"

SESSION = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
VIDEO = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"


def _sections(sdp: str) -> list[str]:
    return sdp.split("m=")[1:]


def test_candidates_of_the_first_section_go_to_every_bundled_section() -> None:
    sdp = SESSION + VIDEO + f"a=candidate:{C1}\r\na=candidate:{C2}\r\na=end-of-candidates\r\n"
    found = normalize_answer(sdp + AUDIO)
    assert found.candidates == (C1, C2)
    assert found.end_of_candidates and found.bundled_mids == ("0", "1")
    for section in _sections(found.sdp):
        assert f"a=candidate:{C1}" in section and f"a=candidate:{C2}" in section
        assert "a=end-of-candidates" in section
        assert "a=ice-ufrag:u" in section and "a=ice-pwd:p" in section  # filled from the tag


def test_candidates_spread_over_sections_are_merged_once() -> None:
    sdp = SESSION + VIDEO + f"a=candidate:{C1}\r\n" + AUDIO + f"a=candidate:{C1}\r\n"
    found = normalize_answer(sdp + f"a=candidate:{C2}\r\n")
    assert found.candidates == (C1, C2)
    assert not found.end_of_candidates
    assert all("end-of-candidates" not in s for s in _sections(found.sdp))


def test_tcp_only_answers_keep_ice_waiting_and_name_the_hosts_to_permit() -> None:
    sdp = SESSION + VIDEO + f"a=candidate:{T1}\r\na=end-of-candidates\r\n" + AUDIO
    found = normalize_answer(sdp)
    assert found.udp == ()
    assert found.unpairable == (("127.0.0.1", 40003),)
    # Signalling the end would make aioice fail at once: peer-reflexive is the only way in.
    assert "a=end-of-candidates" not in found.sdp
    assert found.end_of_candidates  # what the server said is still reported


def test_sections_outside_the_bundle_are_left_alone() -> None:
    session = SESSION.replace("BUNDLE 0 1", "BUNDLE 0")
    sdp = session + VIDEO + f"a=candidate:{C1}\r\n" + AUDIO + f"a=candidate:{C2}\r\n"
    found = normalize_answer(sdp)
    assert found.candidates == (C1,)
    assert f"a=candidate:{C1}" not in _sections(found.sdp)[1]


def test_sdpfrag_round_trip_and_malformed_lines() -> None:
    local = SESSION + VIDEO + f"a=candidate:{C1}\r\na=candidate:{T1}\r\n" + AUDIO
    fragment = local_sdpfrag(local)
    assert fragment is not None
    parsed = parse_sdpfrag(fragment + "a=candidate:garbage\r\n")
    assert (parsed.ice_ufrag, parsed.ice_pwd) == ("u", "p")
    assert parsed.all_candidates() == [C1, T1]
    assert parsed.end_of_candidates
    assert unpairable_addresses(parsed.all_candidates()) == (("127.0.0.1", 40003),)
    assert local_sdpfrag(SESSION + AUDIO) is None  # nothing gathered: nothing to trickle


async def _answer_of_a_real_sender() -> tuple[str, RTCPeerConnection, RTCPeerConnection]:
    """A max-bundle recvonly offer (like ours) answered by aiortc on loopback."""
    client = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    client.addTransceiver("video", direction="recvonly")
    client.addTransceiver("audio", direction="recvonly")
    multi_turn.install(
        seam.ice_connection(client.getTransceivers()[0]),
        servers=[], host_addresses=["127.0.0.1"], ssl_context=None,
        relay_grace=0.1, gather_timeout=2.0,
    )  # fmt: skip
    await client.setLocalDescription(await client.createOffer())
    sender = RTCPeerConnection()
    await sender.setRemoteDescription(RTCSessionDescription(client.localDescription.sdp, "offer"))
    multi_turn.install(
        seam.ice_connection(sender.getTransceivers()[0]),
        servers=[], host_addresses=["127.0.0.1"], ssl_context=None,
        relay_grace=0.1, gather_timeout=2.0,
    )  # fmt: skip
    sender.addTrack(VideoStreamTrack())
    sender.addTrack(AudioStreamTrack())
    await sender.setLocalDescription(await sender.createAnswer())
    return sender.localDescription.sdp, client, sender


def _signalled(pc: RTCPeerConnection) -> set[tuple[str, str, str, str]]:
    """Remote candidates the ICE connection holds from signalling (not peer-reflexive)."""
    connection = seam.ice_connection(pc.getTransceivers()[0])
    return {candidate_key(c.to_sdp()) for c in connection.remote_candidates if c.type != "prflx"}


async def test_aiortc_alone_drops_candidates_listed_only_in_the_first_section() -> None:
    """The aiortc 1.16 limitation this layer exists for (if this fails, aiortc was fixed)."""
    answer, client, sender = await _answer_of_a_real_sender()
    try:
        shaped = answer_shapes.first_only(answer)
        assert answer_shapes.candidate_lines(shaped)
        await client.setRemoteDescription(RTCSessionDescription(shaped, "answer"))
        assert _signalled(client) == set()
    finally:
        await asyncio.gather(client.close(), sender.close())


@pytest.mark.parametrize("shape", ["first-only", "last-only", "every", "ice-lite", "tcp-only"])
async def test_every_answer_shape_reaches_ice_and_connects(shape: str) -> None:
    shaped = AiortcWhepSender(answer_shape=answer_shapes.SHAPES[shape])
    async with shaped as sender, _connected(sender) as connection:
        assert connection.state == "connected"
        pc = connection.pc
        assert pc is not None
        sent = {
            candidate_key(line[len("a=candidate:") :])
            for line in answer_shapes.candidate_lines(
                answer_shapes.SHAPES[shape](_sender_sdp(sender))
            )
        }
        assert sent and _signalled(pc) == sent
        ice = seam.ice_connection(pc.getTransceivers()[0])
        assert ice.remote_is_lite is (shape == "ice-lite")


def _connected(sender: AiortcWhepSender) -> MediaConnection:
    return MediaConnection(sender.url, ice=LOOPBACK_ICE, connect_timeout=15)


def _sender_sdp(sender: AiortcWhepSender) -> str:
    (pc,) = sender._pcs.values()
    return str(pc.localDescription.sdp)


async def test_trickled_candidates_are_sent_and_learnt_by_patch() -> None:
    async with AiortcWhepSender(trickle=True) as sender, _connected(sender) as connection:
        pc = connection.pc
        assert pc is not None
        # Ours went out once, with our credentials and end-of-candidates...
        (fragment,) = sender.trickled
        ours = parse_sdpfrag(fragment)
        assert ours.all_candidates() and ours.end_of_candidates
        assert f"a=ice-ufrag:{ours.ice_ufrag}" in pc.localDescription.sdp
        # ...and the server's, absent from its answer, reached ICE from the PATCH reply.
        for _ in range(100):
            if _signalled(pc):
                break
            await asyncio.sleep(0.02)
        theirs = {
            candidate_key(line[len("a=candidate:") :])
            for line in answer_shapes.candidate_lines(_sender_sdp(sender))
        }
        assert _signalled(pc) == theirs


@pytest.mark.parametrize("status", [404, 405, 501, 412])
async def test_a_server_refusing_trickle_costs_nothing(status: int) -> None:
    from aiohttp import web

    from avatar_rtc.rtc.whep import WhepClient

    async with ScriptedWhep(
        post=[created(**{"Accept-Patch": "application/trickle-ice-sdpfrag", "ETag": '"e1"'})],
        patch=[web.Response(status=status)],
    ) as server:
        client = WhepClient(server.url())
        await client.offer("v=0\r\n")
        assert client.accepts_trickle
        assert await client.trickle("a=ice-ufrag:x\r\n") is None
        (patch,) = server.requests("PATCH")
        assert patch.headers["If-Match"] == '"e1"'
        assert patch.headers["Content-Type"] == "application/trickle-ice-sdpfrag"
        await client.aclose()
