"""Never frozen for good: PLI repeated with backoff, then frames without a keyframe.

A sender deaf to PLI (aiortc's sender with its keyframe request swallowed, through the seam)
whose periodic keyframe is far away (libx264's default: 250 frames, ~8 s at 30 fps; its
bitrate is pinned, or each REMB change would restart the encoder with a keyframe): after a
loss NACK cannot repair, video must come back within ``keyframe_wait`` (+ slack), concealed,
and the PLIs must go out at growing intervals. The jitter buffer and decoder policies are
also tested alone, deterministically.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
from aiortc.codecs import h264

from avatar_rtc.media.decoder import DecodedFrame, TrackDecoder, decoder_for
from avatar_rtc.media.frames import VideoFrame
from avatar_rtc.rtc import aiortc_seam as seam
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from avatar_rtc.rtc.h264 import carries_idr
from avatar_rtc.rtc.jitter_buffer import VideoJitterBuffer
from tests.media.loopback import loopback
from tests.media.test_decoder import FakeSource, h264_frames
from tests.rtc.detached_pipeline import detached_pipeline, feed_rtp, h264_codec
from tests.rtc.test_keyframes import decoded, h264_stream, x264
from tests.rtc.test_receiver_loopback import video_pts, wait_for
from tests.rtc.test_receiver_units import feed

KEYFRAME_WAIT = 1.0  # ReceivePipeline's default, used by the loopback's pipeline
MAX_WAIT = 0.15  # the jitter buffer's wait for a missing packet (pipeline default)
SLACK = 3.0  # a busy machine; the sender's own next keyframe is ~8 s away


# -- jitter buffer ---------------------------------------------------------------------------
def test_jitter_buffer_conceals_after_keyframe_wait() -> None:
    n = 40
    packets = h264_stream(x264(n), "as-encoded", "aiortc")  # one GOP: keyframe first only
    frame_of = {seq: ts // 3000 for seq, ts, _, _ in packets}
    lost = next(i for i, p in enumerate(packets) if frame_of[p[0]] == 10)
    jb = VideoJitterBuffer("H264", max_wait=MAX_WAIT, keyframe_wait=KEYFRAME_WAIT)
    frames = feed(jb, packets[:lost], now=1.0)
    assert len(frames) == 10
    frames += feed(jb, packets[lost + 1 : lost + 40], now=1.0)
    gave_up = 1.0 + MAX_WAIT + 0.01
    assert jb.expire(gave_up)  # gave up on the packet, no keyframe held: PLI
    waiting = feed(jb, packets[lost + 40 : lost + 80], now=1.5)
    assert not jb.expire(gave_up + KEYFRAME_WAIT - 0.01)
    assert waiting == [] and jb.pop() == []  # still waiting for a keyframe
    assert jb.keyframe_waits == 1 and jb.keyframe_wait_timeouts == 0
    assert not jb.expire(gave_up + KEYFRAME_WAIT)  # timed out: conceal
    assert jb.concealing and jb.wants_keyframe and jb.keyframe_wait_timeouts == 1
    resumed = feed(jb, packets[lost + 80 :], now=2.5)
    assert resumed and not any(f.keyframe for f in resumed)
    # Complete frames from the first one that surely starts after the drop, in order.
    numbers = [frame_of[f.first_seq] for f in resumed]
    assert numbers == list(range(numbers[0], n))
    assert jb.frames_without_keyframe == len(resumed)
    assert jb.keyframe_wait_time == pytest.approx(2.5 - gave_up)  # until a frame came
    # PyAV decodes the concealed frames over a stale picture (after the frame-number gap
    # FFmpeg holds back a few pictures, then gives one per frame again).
    assert decoded("h264", (f.data for f in frames + resumed)) >= len(frames + resumed) - 8


def test_jitter_buffer_concealing_skips_later_waits_until_a_keyframe() -> None:
    n = 60
    packets = h264_stream(x264(n, idr_at=(50,)), "as-encoded", "aiortc")
    frame_of = {seq: ts // 3000 for seq, ts, _, _ in packets}
    first = {frame_of[p[0]]: i for i, p in reversed(list(enumerate(packets)))}
    jb = VideoJitterBuffer("H264", max_wait=MAX_WAIT, keyframe_wait=KEYFRAME_WAIT)
    out = feed(jb, packets[: first[10]], now=0.0)
    out += feed(jb, packets[first[10] + 1 : first[20]], now=0.0)
    assert jb.expire(0.2)
    assert not jb.expire(1.3) and jb.concealing
    out += feed(jb, packets[first[20] : first[30]], now=2.0)
    assert [frame_of[f.first_seq] for f in out][-1] == 29
    # A second loss while concealing: released again as soon as the hole is given up on.
    out += feed(jb, packets[first[30] + 1 : first[50]], now=2.0)
    assert [frame_of[f.first_seq] for f in out][-1] == 29
    jb.expire(2.2)
    out += jb.pop()
    assert jb.keyframe_waits == 1 and jb.keyframe_wait_timeouts == 1
    assert jb.concealing and [frame_of[f.first_seq] for f in out][-1] == 49
    out += feed(jb, packets[first[50] :], now=2.5)  # the keyframe ends concealment
    assert not jb.concealing and not jb.wants_keyframe
    assert [frame_of[f.first_seq] for f in out if f.keyframe] == [0, 50]
    assert jb.frames_without_keyframe == len([f for f in out if 20 <= frame_of[f.first_seq] < 50])


def test_jitter_buffer_without_keyframe_wait_stays_frozen() -> None:
    packets = h264_stream(x264(30), "as-encoded", "aiortc")
    jb = VideoJitterBuffer("H264", max_wait=MAX_WAIT, keyframe_wait=None)
    frames = feed(jb, packets[:20], now=0.0)
    frames += feed(jb, packets[21:], now=0.0)
    assert jb.expire(MAX_WAIT + 0.01)
    assert not jb.expire(100.0) and jb.pop() == [] and not jb.concealing
    assert jb.keyframe_wait_timeouts == 0 and jb.keyframe_waits == 1


# -- decoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("keyframe_wait", [0.3, None])
def test_decoder_behind_conceals_when_no_keyframe_comes(keyframe_wait: float | None) -> None:
    n = 36  # brightness wraps after that: x264's scene cut would add a keyframe
    frames = h264_frames(n, gop=1000)
    assert [f.keyframe for f in frames].count(True) == 1
    source = FakeSource()
    dec = TrackDecoder(source, video_queue=2, keyframe_wait=keyframe_wait)
    got: list[int] = []
    hold = threading.Event()
    held = threading.Event()

    def sink(frame: DecodedFrame) -> None:
        got.append(frame.encoded.index)
        if frame.encoded.index == 5:
            held.set()
            hold.wait(5.0)  # a consumer stalls: the decoder falls behind

    remove = dec.add_sink(sink)
    for f in frames[:5]:
        source.push(f)
        deadline = time.monotonic() + 5.0  # hang guard
        while f.index not in got and time.monotonic() < deadline:
            time.sleep(0.005)
    source.push(frames[5])
    assert held.wait(5.0)
    for f in frames[6:12]:  # overflow: dropped, and the decoder skips to the next keyframe
        source.push(f)
    hold.set()
    assert source.keyframe_requests >= 1
    t0 = time.monotonic()
    for f in frames[12:]:  # a sender deaf to that request: P-frames only
        source.push(f)
        time.sleep(0.025)
    waited = time.monotonic() - t0
    remove()
    assert got[:6] == list(range(6))
    stats = dec.stats()
    if keyframe_wait is None:
        assert got == list(range(6)) and stats.keyframe_wait_timeouts == 0
        return
    assert waited > keyframe_wait  # the input lasted long enough to time out
    resumed = got[6:]
    assert resumed and resumed == list(range(resumed[0], n))
    assert stats.keyframe_wait_timeouts == 1 and stats.decode_errors == 0


# -- the whole pipeline against a sender deaf to PLI ------------------------------------------
@pytest.mark.slow
async def test_video_resumes_without_keyframe_from_a_pli_deaf_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plis: list[float] = []
    send_pli = seam.send_pli

    async def spy(receiver: Any, media_ssrc: int) -> None:
        plis.append(time.monotonic())
        await send_pli(receiver, media_ssrc)

    monkeypatch.setattr(seam, "send_pli", spy)
    fixed = property(lambda _self: h264.DEFAULT_BITRATE, lambda _self, _bitrate: None)
    monkeypatch.setattr(h264.H264Encoder, "target_bitrate", fixed)
    async with loopback() as lb:
        media, rtx = video_pts(lb)
        sender = next(t.sender for t in lb.sender.getTransceivers() if t.kind == "video")
        seam.on_keyframe_request(sender, lambda: None)  # deaf to PLI/FIR
        shown: list[tuple[float, DecodedFrame]] = []
        remove = decoder_for(lb.video).add_sink(lambda f: shown.append((time.monotonic(), f)))
        try:
            await wait_for(lambda: len(shown) >= 60, limit=20.0)
            t_before = shown[-1][0] - shown[29][0]
            rate_before = 30 / t_before
            # Lose 300 ms of video and every retransmission: NACK cannot repair it.
            t_loss = time.monotonic()
            t_end = t_loss + 0.3
            lb.drop = lambda pt, seq: pt in rtx or (pt in media and time.monotonic() < t_end)
            await asyncio.sleep(0.3)
            after = len(shown)
            await wait_for(lambda: len(shown) > after, limit=KEYFRAME_WAIT + MAX_WAIT + SLACK)
            resumed_at = shown[after][0]
            # PLIs go on with backoff while concealing: wait for four after the loss.
            await wait_for(lambda: len([t for t in plis if t > t_loss]) >= 4, limit=10.0)
            n = len(shown)
            await asyncio.sleep(1.0)
            rate_after = (len(shown) - n) / 1.0
        finally:
            remove()
        stats = lb.video.stats()
    first_resumed = shown[after][1].encoded
    assert not first_resumed.keyframe, "resumed by the sender's own keyframe, not by concealing"
    assert first_resumed.concealed  # flagged: a model can tell it may show artefacts
    assert not any(f.encoded.concealed for _, f in shown[:after])
    assert VideoFrame.from_decoded(shown[after][1]).concealed
    assert resumed_at - t_end < KEYFRAME_WAIT + MAX_WAIT + SLACK
    assert stats.keyframe_wait_timeouts >= 1 and stats.frames_without_keyframe > 0
    assert stats.keyframe_waits >= 1 and stats.keyframe_wait_time >= KEYFRAME_WAIT
    assert rate_after >= 0.5 * rate_before  # flowing again, at about the sender's rate
    # PLIs at growing intervals: 0.5 s doubling (a busy machine only makes them later).
    after_loss = [t for t in plis if t > t_loss]
    intervals = [b - a for a, b in itertools.pairwise(after_loss)][:3]
    assert all(gap >= 0.9 * 0.5 * 2**i for i, gap in enumerate(intervals)), intervals
    print(
        f"\nresumed {resumed_at - t_end:.2f} s after the loss ended; "
        f"{rate_before:.1f} fps before, {rate_after:.1f} fps after; "
        f"PLI intervals {[round(g, 2) for g in intervals]}; "
        f"waits {stats.keyframe_waits} ({stats.keyframe_wait_time:.2f} s), "
        f"timeouts {stats.keyframe_wait_timeouts}, "
        f"frames without keyframe {stats.frames_without_keyframe}"
    )


@pytest.fixture
def plis(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The media SSRC of every PLI the pipelines send, in order."""
    sent: list[int] = []

    async def counted(receiver: Any, media_ssrc: int) -> None:
        sent.append(media_ssrc)

    monkeypatch.setattr(seam, "send_pli", counted)
    return sent


@pytest.mark.parametrize("packetization", ["aiortc", "single-nal"])
@pytest.mark.parametrize("lead", ["none", "padding"])
async def test_a_stream_that_starts_with_its_keyframe_gets_no_pli(
    plis: list[int], packetization: str, lead: str
) -> None:
    """The first packet is the keyframe's SPS/PPS (in a STAP-A, or alone), which does not
    say a keyframe starts: the IDR that follows does, and no PLI goes out. Nor when a
    padding-only packet (bandwidth probing, a timestamp of its own) comes first."""
    receiver, pipeline = detached_pipeline(h264_codec())
    got: list[EncodedFrame] = []
    pipeline.subscribe(got.append)
    packets = h264_stream(x264(10), "as-encoded", packetization)
    assert not carries_idr(packets[0][3])
    if lead == "padding":
        packets.insert(0, (packets[0][0] - 1, 123_456, False, b""))
    try:
        for packet in packets:
            await feed_rtp(receiver, [packet])
            await asyncio.sleep(0)  # a PLI's task
    finally:
        pipeline.close()
    assert len(got) == 10 and got[0].keyframe
    assert plis == []


async def test_a_pli_asked_for_again_is_answered_by_the_keyframe_that_comes(
    plis: list[int],
) -> None:
    """A second request while the first PLI is outstanding waits for the interval; the
    keyframe that then comes answers it too (it went out anyway, for an extra keyframe)."""
    receiver, pipeline = detached_pipeline(h264_codec())
    got: list[EncodedFrame] = []
    pipeline.subscribe(got.append)
    units = x264(10, idr_at=(5,))
    # Joined mid-stream (the first keyframe is not seen): a PLI once a packet of the second
    # frame shows the first was no keyframe, then asked again.
    packets = [p for p in h264_stream(units, "as-encoded", "aiortc") if p[1] != 0]
    second_frame = next(i for i, p in enumerate(packets) if p[1] != packets[0][1])
    try:
        for i, packet in enumerate(packets):
            await feed_rtp(receiver, [packet])
            await asyncio.sleep(0)  # a PLI's task
            if i < second_frame:
                assert plis == []
            elif i == second_frame:
                assert len(plis) == 1
                pipeline.request_keyframe()  # within the PLI interval: pending
        assert got and got[0].keyframe  # the IDR at 5 came
        await pipeline._tick(time.monotonic() + 5.0)  # long past the interval
        await asyncio.sleep(0)
        assert len(plis) == 1
    finally:
        pipeline.close()
