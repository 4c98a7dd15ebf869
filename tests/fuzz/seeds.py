"""Real SDP to mutate: what aiortc WHEP servers answer to our offer, in every candidate shape
(``tests/rtc/answer_shapes``), their counter-offer, an answer shaped like the live
service's (OvenMediaEngine: ICE-lite, H264 109 with ``sprop-parameter-sets``, Opus 111), and
our own offer (what the emulator's WHEP endpoint reads)."""

from __future__ import annotations

from dataclasses import dataclass

from avatar_rtc.rtc.connection import MediaConnection
from tests.support import LOOPBACK_ICE

from ..rtc import answer_shapes
from ..rtc.whep_sender import AiortcWhepSender

__all__ = ["Seeds", "live_service_answer", "real_seeds"]


@dataclass(frozen=True)
class Seeds:
    answers: list[str]  # answers to our offer (POST 201)
    offers: list[str]  # counter-offers (POST 406)
    client_offer: str  # the offer MediaConnection POSTs


async def _server_sdp(sender: AiortcWhepSender) -> str:
    """The SDP ``sender`` gives a real MediaConnection (it connects, then closes)."""
    applied: list[str] = []
    async with (
        sender,
        MediaConnection(sender.url, ice=LOOPBACK_ICE, on_remote_description=applied.append),
    ):
        pass
    return applied[0]


def live_service_answer(answer: str) -> str:
    """``answer``'s transport (ICE, DTLS, candidates) in the live service's media shape."""
    keep = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:sha-256", "a=candidate:")
    transport = list(dict.fromkeys(line for line in answer.splitlines() if line.startswith(keep)))
    lines = [
        "v=0", "o=OvenMediaEngine 106 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-lite",
        "a=group:BUNDLE 0 1", "a=msid-semantic:WMS *",
        "m=video 9 UDP/TLS/RTP/SAVPF 109", "c=IN IP4 0.0.0.0", "a=sendonly", "a=mid:0",
        "a=setup:passive", "a=rtcp-mux", "a=rtcp-rsize", "a=rtpmap:109 H264/90000",
        "a=fmtp:109 packetization-mode=1;profile-level-id=42e01f;"
        "sprop-parameter-sets=Z0LAH9oBQBbsBEAAAAMAQAAADyPGDKg=,aM4PyA==",
        "a=rtcp-fb:109 nack", "a=rtcp-fb:109 nack pli", "a=ssrc:4083412207 cname:ome",
        *transport,
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=sendonly", "a=mid:1",
        "a=setup:passive", "a=rtcp-mux", "a=rtpmap:111 OPUS/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1", "a=ssrc:1234567890 cname:ome",
    ]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


async def real_seeds() -> Seeds:
    sender = AiortcWhepSender()
    answer = await _server_sdp(sender)
    offer = await _server_sdp(AiortcWhepSender(counter_offer=True))
    shaped = [shape(answer) for shape in answer_shapes.SHAPES.values()]
    answers = [answer, *shaped, answer_shapes.without_candidates(answer)]
    return Seeds(
        answers=[*answers, live_service_answer(answer)],
        offers=[offer],
        client_offer=sender.counters.offers[0],
    )
