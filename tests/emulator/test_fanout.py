"""Fan-out mode (``Emulator(fanout=True)``): one loop, encoded once, played to every session.

Proves what the load generator is for: several sessions each get the whole stream at the
configured rate, timestamped on one clock a benchmark can read (``epoch``); sender reports
are re-stamped (the receivers' A/V clock maps them); a keyframe request moves the viewer back
to a keyframe; NACKed video packets are sent again from a history; speech requests are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.fanout import FanoutMedia, FanoutSource, encoded_loop
from avatar_rtc.emulator.fanout.loop import AUDIO_FRAMES_PER_SECOND, LOOP_SECONDS
from avatar_rtc.emulator.fanout.outlet import HISTORY, Outlet, _Rtx, _Stream
from avatar_rtc.media.formats import VideoFormat
from avatar_rtc.options import SessionOptions
from avatar_rtc.session import AvatarSession
from tests.support import emulator_options, wait_until


def test_the_loop_is_packetized_once_with_a_keyframe_every_second() -> None:
    loop = encoded_loop(192, 160, 25, "H264")
    assert len(loop.video) == LOOP_SECONDS * 25
    assert len(loop.audio) == LOOP_SECONDS * AUDIO_FRAMES_PER_SECOND
    assert [i for i, unit in enumerate(loop.video) if unit.keyframe] == [0, 25, 50, 75]
    assert loop.keyframe_at_or_before(49) == 25 and loop.keyframe_at_or_before(50) == 50
    assert all(0 < len(p) <= 1300 for unit in loop.video for p in unit.payloads)
    assert encoded_loop(192, 160, 25, "H264") is loop  # encoded once per process


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(fanout=True) as emu:
        yield emu


def options(emu: Emulator) -> SessionOptions:
    return emulator_options(emu, avatar_id="fanout")


async def watch(session: AvatarSession, epoch: list[float], seconds: float) -> list[float]:
    """Latency of each decoded frame: arrival minus its send time read off the fan-out clock."""
    latencies = []
    async with session.video(VideoFormat(pixel_format=None)) as stream:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for frame in stream:
                    latencies.append(frame.arrival_time - (epoch[0] + frame.rtp_timestamp / 90000))
    return latencies


@pytest.mark.slow
async def test_every_session_gets_the_whole_stream_on_one_clock(emulator: Emulator) -> None:
    sessions = [AvatarSession(options(emulator)) for _ in range(3)]
    try:
        await asyncio.gather(*(s.start() for s in sessions))
        await asyncio.gather(*(s.wait_first_frame(10) for s in sessions))
        media = [emulator.session(str(s.session_id)).media for s in sessions]
        assert all(isinstance(m, FanoutMedia) for m in media)
        source = media[0].source  # type: ignore[union-attr]
        assert isinstance(source, FanoutSource)
        assert all(m.source is source for m in media)  # type: ignore[union-attr]
        await sessions[0].say("ignored by the loop")  # accepted all the same
        # sender reports re-stamped on the fan-out clock: the receivers map through them
        await wait_until(
            lambda: all(s.stats().video.clock_source == "rtcp-sr" for s in sessions), 5.0
        )
        epoch = [source.epoch]
        runs = await asyncio.gather(*(watch(s, epoch, 2.0) for s in sessions))
        for latencies in runs:
            assert 40 <= len(latencies) <= 60  # 25 fps for 2 s
            assert min(latencies) > 0 and sorted(latencies)[len(latencies) // 2] < 0.2

        jumps, keyframes = source.stats.keyframe_jumps, sessions[1].stats().video.keyframes
        sessions[1].video_pipeline.request_keyframe()  # a PLI
        await wait_until(lambda: sessions[1].stats().video.keyframes > keyframes, 2.0)
        assert source.stats.keyframe_jumps > jumps
        assert source.stats.send_errors == 0
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


@pytest.mark.slow
async def test_two_ticks_a_wakeup_send_the_same_stream_in_half_the_wakeups() -> None:
    with pytest.raises(ValueError, match="fanout_ticks"):
        Emulator(fanout_ticks=2)  # (the synthetic avatar has clocks of its own)
    async with (
        Emulator(fanout=True, fanout_ticks=2) as emu,
        AvatarSession(options(emu)) as session,
    ):
        await session.wait_first_frame(10)
        media = emu.session(str(session.session_id)).media
        assert isinstance(media, FanoutMedia)
        source = media.source
        indexes: list[int] = []
        audio = session.audio(policy="all")
        async with session.video(VideoFormat(pixel_format=None), policy="all") as stream:
            async for frame in stream:
                indexes.append(frame.index)
                if len(indexes) == 50:  # 2 s
                    break
        stats = session.stats()
        received = audio.stats().received
    assert source.ticks_per_wakeup == 2
    assert source.stats.ticks == 2 * source.stats.wakeups > 0
    assert indexes == list(range(indexes[0], indexes[0] + 50))  # every frame, in order
    assert stats.video.lost == 0 and stats.audio.lost == 0 and received > 0


def test_the_history_keeps_the_last_video_packets_and_wraps_them_in_rtx() -> None:
    plain = _Stream(0x1234, 96, history=True)
    packets = [plain.packet(bytes([i]) * 10, 9000 + i, i % 3 == 0) for i in range(HISTORY + 5)]
    first = int.from_bytes(packets[0][2:4], "big")
    assert plain.retransmission(first) is None  # overwritten by packet HISTORY
    newest = int.from_bytes(packets[-1][2:4], "big")
    assert plain.retransmission(newest) == packets[-1]  # no RTX: the very packet again
    assert plain.retransmission((newest + 1) & 0xFFFF) is None  # not sent yet
    assert _Stream(1, 111).retransmission(0) is None  # audio: no history

    with_rtx = _Stream(0x1234, 96, history=True)
    original = with_rtx.packet(b"payload", 3000, True)
    with_rtx.rtx = _Rtx(0x5678, 97)
    seq = int.from_bytes(original[2:4], "big")
    rtx_seq = with_rtx.rtx.sequence
    rtx = with_rtx.retransmission(seq)
    assert rtx is not None
    # RFC 4588: RTX PT with the marker kept, RTX sequence and SSRC, same timestamp; the
    # original sequence number leads the payload.
    assert rtx[1] == 0x80 | 97 and int.from_bytes(rtx[2:4], "big") == rtx_seq
    assert rtx[4:8] == original[4:8] and int.from_bytes(rtx[8:12], "big") == 0x5678
    assert rtx[12:] == original[2:4] + b"payload"
    assert with_rtx.rtx.sequence == (rtx_seq + 1) & 0xFFFF


LOSS = 0.05  # of the original video packets, dropped on the way out (seeded)


def drop_originals(outlet: Outlet, loss: float) -> list[int]:
    """Lose ``loss`` of ``outlet``'s original video packets after they are numbered and kept
    (as the network would); retransmissions pass. Returns the growing list of lost sequence
    numbers; ``del outlet.send`` ends the loss."""
    rng, lost, send, video = random.Random(7), [], outlet.send, outlet.video
    assert video is not None

    async def lossy(stream: Any, payload: bytes, timestamp: int, marker: bool) -> None:
        if stream is video and rng.random() < loss:
            lost.append(video.sequence)
            video.packet(payload, timestamp, marker)
            return
        await send(stream, payload, timestamp, marker)

    outlet.send = lossy  # type: ignore[method-assign]
    return lost


@pytest.mark.slow
async def test_nacked_video_packets_are_sent_again(emulator: Emulator) -> None:
    session = AvatarSession(options(emulator))
    try:
        await session.start()
        await session.wait_first_frame(10)
        media = emulator.session(str(session.session_id)).media
        assert isinstance(media, FanoutMedia)
        (outlet,) = media.source.outlets
        assert outlet.video is not None
        before, sent = session.video_pipeline.stats(), outlet.video.packets
        lost = drop_originals(outlet, LOSS)
        await wait_until(lambda: len(lost) >= 40, 20.0)
        del outlet.send
        dropped, sent = len(lost), outlet.video.packets - sent
        # The last NACKs and their retransmissions (a few RTTs on loopback).
        await asyncio.sleep(1.0)
        after = session.video_pipeline.stats()
        recovered = after.recovered_packets - before.recovered_packets
        assert outlet.retransmits >= recovered > 0
        # Our client offers RTX: the retransmissions came RTX-wrapped, and were unwrapped.
        assert after.rtx_packets - before.rtx_packets >= recovered
        residual = (dropped - recovered) / sent
        assert residual < LOSS / 4, (residual, dropped, recovered, sent)
    finally:
        await session.close()
