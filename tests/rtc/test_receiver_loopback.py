"""ReceivePipeline against a real aiortc sender on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

from avatar_rtc.media import VideoFormat, VideoStream
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.media.loopback import Loopback, loopback

# A PLI-requested keyframe arrives within ~0.1-0.5 s; 3 s leaves room for a busy machine and is
# still far from the sender's own next keyframe.
PLI_KEYFRAME_WITHIN = 3.0


def video_pts(lb: Loopback) -> tuple[set[int], set[int]]:
    """(media payload types, rtx payload types) of the video track."""
    return set(lb.extra["video_pts"]), set(lb.extra.get("rtx_pts", set()))


async def wait_for(pred: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
async def test_encoded_frames_and_aiortc_path_stays_idle(codec: str) -> None:
    async with loopback(codec=codec) as lb:
        frames: list[EncodedFrame] = []
        audio: list[EncodedFrame] = []
        lb.video.subscribe(frames.append)
        unsub = lb.audio.subscribe(audio.append)
        await wait_for(lambda: len(frames) >= 45)
        unsub()
        assert frames[0].keyframe and frames[0].kind == "video"
        assert frames[0].codec == codec.split("/")[1]
        if frames[0].codec == "H264":
            assert frames[0].data.startswith(b"\x00\x00\x00\x01")
        assert [f.index for f in frames] == list(range(len(frames)))
        steps = [b.rtp_timestamp - a.rtp_timestamp for a, b in itertools.pairwise(frames)]
        assert all(abs(step - 3000) <= 1 for step in steps)
        assert all(b.presentation_time > a.presentation_time for a, b in itertools.pairwise(frames))
        assert audio and audio[0].codec == "opus" and audio[0].clock_rate == 48000
        # aiortc's own decoder queue and track queue never see a frame
        r = lb.video_receiver
        assert r._RTCRtpReceiver__decoder_queue.qsize() == 0  # type: ignore[attr-defined]
        assert r.track._queue.qsize() == 0  # type: ignore[attr-defined]
        st = lb.video.stats()
        assert st.frames >= 45 and st.keyframes >= 1 and st.lost == 0


@pytest.mark.slow
async def test_receiver_reports_still_reach_the_sender() -> None:
    async with loopback() as lb:
        receiver: Any = lb.video_receiver
        original = receiver._send_rtcp
        sent: list[object] = []

        async def spy(packet: object) -> None:
            sent.append(packet)
            await original(packet)

        receiver._send_rtcp = spy  # REMB goes through here (RR/NACK/PLI too)
        # RTCP goes out every ~1 s each way; the waits only guard a hang.
        await wait_for(lambda: lb.video.stats().sender_reports >= 1, limit=15.0)
        tx_video = next(t for t in lb.sender.getTransceivers() if t.kind == "video")
        remote: list[Any] = []
        for _ in range(150):
            stats = await tx_video.sender.getStats()
            remote = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
            if remote and remote[0].roundTripTime is not None:  # an RR after our first SR
                break
            await asyncio.sleep(0.1)
        assert remote, "no RTCP RR reached the sender"
        assert remote[0].roundTripTime is not None  # LSR/DLSR kept by aiortc's handler
        # aiortc's REMB feedback is kept (its estimator sends rarely: allow a few seconds)
        await wait_for(
            lambda: any(isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP for p in sent),
            limit=8.0,
        )


async def test_pli_at_start_when_first_packet_is_not_a_keyframe() -> None:
    async with loopback() as lb:
        media, _rtx = video_pts(lb)
        stop_dropping = time.monotonic() + 0.4

        # lose the sender's initial keyframe (and anything else for 0.4 s)
        lb.drop = lambda pt, seq: pt in media and time.monotonic() < stop_dropping
        frames: list[EncodedFrame] = []
        lb.video.subscribe(frames.append)
        await wait_for(lambda: bool(frames), limit=10.0)
        first_at = time.monotonic()
        assert frames[0].keyframe
        assert lb.video.stats().plis_sent >= 1
        # libx264's periodic keyframe is ~8 s away (250 frames): this one came from our PLI
        assert first_at - stop_dropping < PLI_KEYFRAME_WITHIN


@pytest.mark.slow
async def test_single_loss_recovered_by_nack() -> None:
    async with loopback() as lb:
        media, _rtx = video_pts(lb)
        frames: list[EncodedFrame] = []
        lb.video.subscribe(frames.append)
        await wait_for(lambda: len(frames) >= 30)
        plis_before = lb.video.stats().plis_sent  # a PLI at start is not this test's business
        dropped: set[int] = set()

        def drop(pt: int, seq: int) -> bool:
            # drop three original packets once each; their RTX retransmissions pass
            if pt in media and len(dropped) < 3 and seq not in dropped and seq % 2 == 0:
                dropped.add(seq)
                return True
            return False

        lb.drop = drop
        await wait_for(lambda: lb.video.stats().recovered_packets >= 3, limit=15.0)
        await wait_for(lambda: len(frames) >= 75)  # and a second of video after the repairs
        st = lb.video.stats()
        assert len(dropped) == 3
        assert st.nacks_sent >= 1 and st.recovered_packets >= 3 and st.rtx_packets >= 3
        assert st.frames_dropped == 0 and st.plis_sent == plis_before
        idx = [f.rtp_timestamp for f in frames]
        assert all(b - a == 3000 for a, b in itertools.pairwise(idx))  # no frame lost


@pytest.mark.slow
async def test_burst_loss_resumes_quickly_through_pli() -> None:
    async with loopback() as lb:
        media, rtx = video_pts(lb)
        stream = VideoStream(lb.video, VideoFormat("rgb24"))
        pattern = lb.video_track.pattern
        async for f in stream:
            if f.index >= 60:
                break
        plis_before = lb.video.stats().plis_sent
        t_end = time.monotonic() + 0.3
        # lose 300 ms of video, and every retransmission: NACK cannot repair this
        lb.drop = lambda pt, seq: pt in rtx or (pt in media and time.monotonic() < t_end)
        last = pattern.read_counter(f.array)
        resumed_at = None
        give_up = t_end + PLI_KEYFRAME_WITHIN + 2.0  # hang guard
        async for f in stream:
            if time.monotonic() > give_up:
                break
            n = pattern.read_counter(f.array)
            if n > last + 9 and time.monotonic() > t_end:
                resumed_at = time.monotonic()
                break
            last = max(last, n)
        stream.close()
        assert resumed_at is not None
        # libx264's periodic keyframe is ~8 s away (250 frames): this one came from our PLI
        assert resumed_at - t_end < PLI_KEYFRAME_WITHIN
        st = lb.video.stats()
        assert st.plis_sent > plis_before
        assert st.frames_dropped > 0
