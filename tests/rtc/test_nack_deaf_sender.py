"""A sender that answers no NACK (GStreamer's webrtcbin): stop waiting for holes, conceal.

Such a sender repairs a loss only with the keyframe a PLI asks for; waiting for the
retransmission (and dropping the frames after the hole meanwhile) turned every loss into a
freeze. The tracker notices (``sender_repairs``), the pipeline waits only ``REORDER_WAIT``
and the jitter buffer releases the frames after a hole at once, until the keyframe comes.
One retransmission, even a late one, restores the normal waits. The pieces are tested
deterministically, the whole pipeline against aiortc's sender with its retransmissions dropped.
"""

from __future__ import annotations

import random
import time

import pytest

from avatar_rtc.rtc.jitter_buffer import VideoJitterBuffer
from avatar_rtc.rtc.nack import NackTracker
from avatar_rtc.rtc.receiver import REORDER_WAIT
from tests.media.loopback import loopback
from tests.rtc.test_receiver_loopback import video_pts, wait_for
from tests.rtc.test_receiver_units import feed, keyframe, pframe

DEAF_AFTER = 16  # NackTracker's default


def lose_and_give_up(tracker: NackTracker, seq: int, now: float) -> int:
    """Packet ``seq`` lost: NACKed once, never answered, given up on. The next seq to use."""
    tracker.on_packet(seq + 1, now)
    assert tracker.due(now) == [seq]
    tracker.forget_before(seq + 1)  # the jitter buffer gave up on it
    return seq + 2


def one_short_of_deaf() -> tuple[NackTracker, int]:
    """A tracker whose last DEAF_AFTER - 1 NACKed packets never came; the next seq to use."""
    tracker = NackTracker()
    tracker.on_packet(0, 0.0)
    seq = 1
    for i in range(DEAF_AFTER - 1):
        seq = lose_and_give_up(tracker, seq, 0.1 * i)
    return tracker, seq


# -- NACK tracker ----------------------------------------------------------------------------
def test_the_tracker_notices_a_sender_that_answers_no_nack_and_one_answer_restores_it() -> None:
    tracker, seq = one_short_of_deaf()
    assert tracker.sender_repairs  # 15 unanswered in a row: still believed
    seq = lose_and_give_up(tracker, seq, 2.0)
    assert not tracker.sender_repairs
    # A late retransmission of a packet given up on is an answer all the same.
    tracker.on_packet(seq - 2, 2.05)
    assert tracker.sender_repairs and tracker.rtt is not None


def test_a_retransmission_in_time_resets_the_count() -> None:
    tracker, seq = one_short_of_deaf()
    tracker.on_packet(seq + 1, 2.0)
    assert tracker.due(2.0) == [seq]
    tracker.on_packet(seq, 2.02)  # answered
    assert tracker.recovered == 1
    seq += 2
    for i in range(DEAF_AFTER - 1):
        seq = lose_and_give_up(tracker, seq, 3.0 + 0.1 * i)
    assert tracker.sender_repairs  # the count started again after the answer


def test_an_outages_tail_unanswered_says_nothing_about_the_sender() -> None:
    tracker = NackTracker(outage_tail=128, outage_pause=0.25)
    for seq in range(100):
        tracker.on_packet(seq, seq * 0.01)
    assert not tracker.on_packet(400, 3.0)  # a 2 s outage: its last 128 packets NACKed once
    assert len(tracker.due(3.0)) == 128
    tracker.forget_before(400)  # none came: the sender's history did not reach back
    assert tracker.sender_repairs


# -- jitter buffer ---------------------------------------------------------------------------
def test_conceal_at_once_releases_the_frames_after_a_hole_until_the_keyframe() -> None:
    jb = VideoJitterBuffer("H264", max_wait=REORDER_WAIT, keyframe_wait=1.0)
    jb.conceal_at_once = True
    assert [f.keyframe for f in feed(jb, keyframe(0, 0) + pframe(3, 3000))] == [True, False]
    lost = pframe(5, 6000, 3)
    held = feed(jb, [lost[0], lost[2], *pframe(8, 9000), *pframe(10, 12000)], now=1.0)
    assert held == []  # behind the hole at 6
    assert not jb.expire(1.0 + REORDER_WAIT / 2)
    assert jb.expire(1.0 + REORDER_WAIT)  # gave up: a PLI is wanted, and ...
    resumed = jb.pop()  # ... the frames held behind the hole come out at once
    assert [(f.rtp_timestamp, f.keyframe) for f in resumed] == [(9000, False), (12000, False)]
    assert all(f.concealed for f in resumed)
    assert jb.concealing and jb.wants_keyframe and jb.keyframe_waits == 0
    assert [f.rtp_timestamp for f in feed(jb, pframe(12, 15000), now=1.1)] == [15000]
    frames = feed(jb, keyframe(14, 18000) + pframe(17, 21000), now=1.2)
    assert [(f.rtp_timestamp, f.keyframe) for f in frames] == [(18000, True), (21000, False)]
    assert not any(f.concealed for f in frames)
    assert not jb.concealing and not jb.wants_keyframe
    assert jb.frames_without_keyframe == 3 and jb.keyframe_wait_timeouts == 0


def test_conceal_at_once_is_off_when_the_user_never_conceals() -> None:
    jb = VideoJitterBuffer("H264", max_wait=REORDER_WAIT, keyframe_wait=None)
    jb.conceal_at_once = True
    feed(jb, keyframe(0, 0))
    lost = pframe(3, 3000, 3)
    feed(jb, [lost[0], lost[2], *pframe(6, 6000)], now=1.0)
    assert jb.expire(1.0 + REORDER_WAIT)
    assert jb.pop() == [] and jb.waiting_for_keyframe and not jb.concealing
    assert [f.keyframe for f in feed(jb, keyframe(8, 9000), now=1.2)] == [True]


# -- the pipeline against aiortc's sender with its retransmissions dropped -------------------
@pytest.mark.slow
async def test_a_sender_deaf_to_nack_gets_short_waits_and_concealment_then_normal_again() -> None:
    rng = random.Random(7)
    async with loopback() as lb:
        media, rtx = video_pts(lb)
        assert rtx, "the loopback negotiates RTX: dropping it makes the sender deaf to NACK"
        frames: list[float] = []
        lb.video.subscribe(lambda f: frames.append(time.monotonic()))
        await wait_for(lambda: len(frames) >= 30, limit=20.0)
        normal = lb.video.stats()
        assert normal.sender_repairs and normal.hole_wait >= 0.15

        # 5 % of media packets lost and every retransmission too.
        lb.drop = lambda pt, seq: pt in rtx or (pt in media and rng.random() < 0.05)
        await wait_for(lambda: not lb.video.stats().sender_repairs, limit=60.0)
        deaf = lb.video.stats()
        assert deaf.hole_wait == REORDER_WAIT
        n = len(frames)
        await wait_for(lambda: lb.video.stats().frames_without_keyframe > 0, limit=20.0)
        await wait_for(lambda: len(frames) >= n + 30, limit=20.0)  # still flowing

        # Retransmissions answered again: the first one restores the round-trip waits.
        lb.drop = lambda pt, seq: pt in media and rng.random() < 0.05
        await wait_for(lambda: lb.video.stats().sender_repairs, limit=60.0)
        again = lb.video.stats()
        assert again.recovered_packets > deaf.recovered_packets
        assert again.hole_wait >= 0.15
