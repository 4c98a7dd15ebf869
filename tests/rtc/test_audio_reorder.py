"""AudioReorderBuffer: audio back in sequence order, holes given up in time, bounded."""

from __future__ import annotations

import asyncio
import random

import pytest

from avatar_rtc.rtc.audio_reorder import MAX_HELD, MAX_WAIT, MIN_WAIT, AudioReorderBuffer
from avatar_rtc.rtc.encoded_frame import EncodedFrame
from tests.rtc.detached_pipeline import SSRC, Packet, detached_pipeline, feed_rtp, opus_codec

PACKET = 0.02  # seconds between Opus packets


def test_in_order_packets_are_released_at_once() -> None:
    buffer = AudioReorderBuffer[int]()
    out = [buffer.push(seq, seq, seq * PACKET) for seq in range(100, 110)]
    assert out == [[seq] for seq in range(100, 110)]
    assert not buffer.waiting
    assert (buffer.reordered, buffer.late, buffer.given_up) == (0, 0, 0)


def test_a_swapped_pair_comes_out_in_order() -> None:
    buffer = AudioReorderBuffer[int]()
    assert buffer.push(1, 1, 0.00) == [1]
    assert buffer.push(3, 3, 0.02) == []  # 2 is missing: 3 waits
    assert buffer.waiting
    assert buffer.push(2, 2, 0.03) == [2, 3]
    assert buffer.push(4, 4, 0.04) == [4]
    assert (buffer.reordered, buffer.late, buffer.given_up) == (1, 0, 0)


def test_a_lost_packet_is_given_up_after_the_wait_and_counted_late_if_it_comes() -> None:
    buffer = AudioReorderBuffer[int]()
    buffer.push(1, 1, 0.0)
    assert buffer.push(3, 3, 0.02) == []
    assert buffer.push(4, 4, 0.04) == []
    assert buffer.expire(0.02 + MIN_WAIT - 0.001) == []  # not yet
    assert buffer.expire(0.02 + MIN_WAIT + 1e-9) == [3, 4]
    assert not buffer.waiting and buffer.given_up == 1
    assert buffer.push(2, 2, 0.2) == []  # too late: its place is gone
    assert buffer.late == 1
    assert buffer.push(5, 5, 0.21) == [5]


def test_duplicates_are_dropped() -> None:
    buffer = AudioReorderBuffer[int]()
    buffer.push(1, 1, 0.0)
    buffer.push(3, 3, 0.02)
    assert buffer.push(3, 3, 0.021) == []  # held already
    assert buffer.push(1, 1, 0.022) == []  # released already
    assert buffer.push(2, 2, 0.03) == [2, 3]
    assert buffer.late == 2


def test_the_wait_grows_to_the_reordering_seen_and_decays() -> None:
    buffer = AudioReorderBuffer[int]()
    assert buffer.wait(0.0) == MIN_WAIT
    buffer.push(1, 1, 0.0)
    buffer.push(3, 3, 0.02)
    # 2 comes 0.1 s after its hole was noticed: too late for the first wait, but measured
    assert buffer.expire(0.1) == [3]
    buffer.push(2, 2, 0.12)
    assert buffer.late == 1
    assert buffer.wait(0.12) == pytest.approx(1.5 * 0.1)
    # the next hole is waited for that long, and filled in time
    buffer.push(5, 5, 0.14)
    assert buffer.expire(0.14 + 0.1) == []
    assert buffer.push(4, 4, 0.14 + 0.11) == [4, 5]
    # a minute later the peak is forgotten
    assert buffer.wait(70.0) == MIN_WAIT


def test_the_wait_is_capped() -> None:
    buffer = AudioReorderBuffer[int]()
    buffer.push(1, 1, 0.0)
    buffer.push(3, 3, 0.02)
    buffer.expire(0.1)
    buffer.push(2, 2, 5.0)  # 5 s late
    assert buffer.wait(5.0) == MAX_WAIT


def test_a_long_jump_is_no_reordering() -> None:
    buffer = AudioReorderBuffer[int]()
    buffer.push(1, 1, 0.0)
    buffer.push(3, 3, 0.02)
    far = 3 + MAX_HELD + 5
    assert buffer.push(far, far, 0.04) == [3, far]  # held ones first, in order
    assert buffer.jumps == 1 and not buffer.waiting
    assert buffer.push(far + 1, far + 1, 0.06) == [far + 1]


def test_flush_releases_in_order_and_starts_again() -> None:
    buffer = AudioReorderBuffer[int]()
    buffer.push(10, 10, 0.0)
    buffer.push(13, 13, 0.01)
    buffer.push(12, 12, 0.02)
    assert buffer.flush() == [12, 13]
    assert buffer.push(500, 500, 0.03) == [500]  # a new stream: its first packet


def test_random_jitter_loses_nothing_and_keeps_order() -> None:
    """Uniform 0-80 ms of delay per packet (as a jittery relay), 2000 packets, timer ticks
    every 10 ms: every packet comes out once, in order, once the wait has adapted."""
    rng = random.Random(7)
    arrivals = sorted((seq * PACKET + rng.uniform(0, 0.08), seq) for seq in range(2000))
    buffer = AudioReorderBuffer[int]()
    out: list[int] = []
    tick = 0.0
    for at, seq in arrivals:
        while tick + 0.01 <= at:
            tick += 0.01
            out += buffer.expire(tick)
        out += buffer.push(seq, seq, at)
    out += buffer.flush()
    assert out == sorted(out)
    assert len(out) == len(set(out))
    # the first holes, before the wait adapts, may be given up; then none
    assert len(out) >= 1990, (len(out), buffer.late, buffer.given_up)
    assert buffer.reordered > 300


def test_bad_waits_are_refused() -> None:
    with pytest.raises(ValueError):
        AudioReorderBuffer[int](min_wait=0.1, max_wait=0.05)


# -- in the receive pipeline ---------------------------------------------------------------


def _opus(seq: int) -> Packet:
    return (seq, seq * 960, True, bytes([seq & 0xFF]) * 20)


async def test_the_pipeline_releases_audio_in_order_and_gives_a_hole_up_in_time() -> None:
    receiver, pipeline = detached_pipeline(opus_codec())
    got: list[int] = []
    six = asyncio.Event()

    def on_frame(frame: EncodedFrame) -> None:
        got.append(frame.rtp_timestamp // 960)
        if got[-1] == 6:
            six.set()

    pipeline.subscribe(on_frame)
    pipeline._start_timer()  # (the wrapped ``receive`` starts it)
    try:
        await feed_rtp(receiver, [_opus(s) for s in (1, 3, 2, 5, 6)])  # 2 late, 4 lost
        assert got == [1, 2, 3]
        # nothing more comes: the timer gives 4 up and releases 5 and 6
        await asyncio.wait_for(six.wait(), 5)
        assert got == [1, 2, 3, 5, 6]
        stats = pipeline.stats()
        assert (stats.reordered_packets, stats.late_packets) == (1, 0)
        assert stats.hole_wait == MIN_WAIT
    finally:
        pipeline.close()


async def test_a_new_stream_gets_the_old_ones_held_packets_first() -> None:
    receiver, pipeline = detached_pipeline(opus_codec())
    got: list[tuple[int, int]] = []
    pipeline.subscribe(lambda frame: got.append((frame.index, frame.rtp_timestamp // 960)))
    try:
        await feed_rtp(receiver, [_opus(s) for s in (10, 12, 13)])  # 11 missing
        await feed_rtp(receiver, [_opus(500)], ssrc=SSRC + 1)
        assert [ts for _, ts in got] == [10, 12, 13, 500]
    finally:
        pipeline.close()
