"""RtpTap (frame send times, deliberate loss) and PacketTrack (hand-off to aiortc senders)."""

from __future__ import annotations

import asyncio
import struct
from fractions import Fraction
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from avatar_rtc.emulator.media.rtp_tap import RtpTap
from avatar_rtc.emulator.media.tracks import PacketTrack


def _rtp(seq: int, ts: int, ssrc: int, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + b"payload"


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


async def test_tap_reports_frames_and_drops_video() -> None:
    frames: list[tuple[Any, ...]] = []
    tap = RtpTap(lambda kind, ts, ssrc: frames.append((kind, ts, ssrc)))
    transport = _Transport()
    tap.install(transport)
    tap.install(transport)  # idempotent
    tap.watch(1, "video")
    tap.watch(2, "audio")
    send = transport._send_rtp
    await send(_rtp(10, 1000, 1))
    await send(_rtp(11, 1000, 1))  # same frame
    await send(_rtp(12, 4600, 1))
    await send(_rtp(5, 960, 2))
    await send(bytes([0x80, 200]) + b"\x00" * 26)  # RTCP sender report: passes
    await send(_rtp(10, 1000, 1))  # a retransmission (older timestamp): not a new frame
    assert frames == [("video", 1000, 1), ("video", 4600, 1), ("audio", 960, 2)]
    assert len(transport.sent) == 6

    tap.drop_video = 2
    await send(_rtp(13, 8200, 1))
    await send(_rtp(14, 8200, 1))
    await send(_rtp(6, 1920, 2))  # audio is never dropped
    await send(_rtp(15, 8200, 1))
    assert tap.dropped_video == 2
    assert len(transport.sent) == 8

    tap.video_loss = 0.5
    for seq in range(16, 216):
        await send(_rtp(seq, 8200, 1))
    assert 60 < tap.dropped_video - 2 < 140

    tap.uninstall()
    assert "_send_rtp" not in transport.__dict__


def _packet(pts: int) -> av.Packet[Any]:
    packet = av.Packet(b"x")
    packet.pts = pts
    packet.time_base = Fraction(1, 90000)
    return packet


async def test_packet_track_handoff() -> None:
    started: list[PacketTrack] = []
    overflow: list[PacketTrack] = []
    stopped: list[PacketTrack] = []
    track = PacketTrack(
        "video",
        maxsize=2,
        on_start=started.append,
        on_overflow=overflow.append,
        on_stop=stopped.append,
    )
    track.push(_packet(0))  # before the sender pulls: dropped (would be stale)
    receiving = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert started == [track]
    track.push(_packet(3600))
    assert (await receiving).pts == 3600
    assert track.last_pts == 3600
    for pts in (7200, 10800, 14400):
        track.push(_packet(pts))
    assert overflow == [track] and track.dropped == 1
    assert (await track.recv()).pts == 10800  # the oldest was dropped

    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert (await pending).pts == 14400
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await pending
    assert stopped == [track]
    with pytest.raises(MediaStreamError):
        await track.recv()
