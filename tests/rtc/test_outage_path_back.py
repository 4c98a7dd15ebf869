"""The end of an outage, told by the transport: video's lost tail is NACKed before its own
next packet comes.

After an outage the first datagram is usually audio (every 20 ms; video's next frame is up to
40 ms away). ``datagram_batch`` tells the pipelines the path is back; a video stream silent
as long guesses from its packet rate which sequence numbers were sent meanwhile and NACKs the
newest of them, and asks for a keyframe, at once. The pieces are tested deterministically, the
whole pipeline against aiortc's sender with audio let through before video.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from avatar_rtc.rtc import datagram_batch
from avatar_rtc.rtc.nack import NackTracker
from tests.media.loopback import loopback
from tests.rtc.test_datagram_batch import batch_on_a_socket, fake_transport, rtp
from tests.rtc.test_receiver_loopback import video_pts, wait_for

__all__ = ["fake_transport"]  # the fixture, imported for the batch test


def streaming(tracker: NackTracker, rate: float, seconds: float) -> int:
    """``rate`` packets per second for ``seconds`` from t = 0; the last sequence number."""
    n = round(rate * seconds)
    for seq in range(n + 1):
        assert tracker.on_packet(seq, seq / rate)
    return n


# -- NACK tracker ----------------------------------------------------------------------------
def test_the_guess_nacks_the_newest_packets_the_rate_says_were_sent() -> None:
    tracker = NackTracker(outage_tail=128, outage_pause=0.25, budget_burst=32)
    last = streaming(tracker, 100.0, 2.0)  # seq 200 at t = 2.0
    assert tracker.packet_rate == pytest.approx(100.0)
    assert not tracker.guess_outage_tail(2.1)  # 0.1 s: not an outage
    assert tracker.guess_outage_tail(4.0)  # 2 s silent: ~200 sent meanwhile, ask the last 128
    assert tracker.due(4.0, retries=False) == list(range(last + 73, last + 201))
    assert tracker.tail_guesses == 1 and tracker.bursts == 1
    assert not tracker.guess_outage_tail(4.01)  # once: the stream counts as heard from now
    # Confirmed by the first retransmission: nothing below what was asked will be.
    assert tracker.take_confirmed_guess() is None
    assert tracker.on_packet(last + 100, 4.003, retransmission=True)
    assert tracker.take_confirmed_guess() == last + 73
    assert tracker.take_confirmed_guess() is None  # once


def test_guessed_packets_count_as_recovered_only_when_retransmitted() -> None:
    tracker = NackTracker(outage_tail=16, outage_pause=0.25)
    last = streaming(tracker, 50.0, 2.0)
    assert tracker.guess_outage_tail(3.0)  # ~50 sent: 35..50 past the last are asked for
    asked = tracker.due(3.0, retries=False)
    assert asked == list(range(last + 35, last + 51))
    assert tracker.on_packet(asked[0], 3.002, retransmission=True)
    assert tracker.recovered == 1 and tracker.rtt == pytest.approx(0.002)
    # Guessed too high: the sender had not sent the last one yet; it comes as itself.
    assert tracker.on_packet(asked[-1], 3.03)
    assert tracker.recovered == 1 and tracker.rtt == pytest.approx(0.002)


def test_a_guess_too_low_leaves_the_rest_of_the_run_to_the_next_fresh_packet() -> None:
    tracker = NackTracker(outage_tail=16, outage_pause=0.25, max_burst=8)
    last = streaming(tracker, 50.0, 2.0)
    assert tracker.guess_outage_tail(3.0)
    tracker.due(3.0, retries=False)
    top = last + 50
    assert tracker.on_packet(top - 1, 3.002, retransmission=True)  # retransmissions: no
    # pause ends with them; the first fresh packet, 40 further, ends the outage's run.
    assert not tracker.on_packet(top + 41, 3.01)
    assert tracker.unasked_below == top + 41 - 16  # its tail is asked for, as after a pause
    assert tracker.due(3.01, retries=False) == list(range(top + 25, top + 41))


def test_a_guess_too_high_is_undone_by_the_first_fresh_packet() -> None:
    """The sender paused during the outage (sent 10, not the 100 the rate says): nothing it
    has was asked for; its first fresh packet is handled as if there had been no guess."""
    tracker = NackTracker(outage_tail=16, outage_pause=0.25, max_burst=8)
    last = streaming(tracker, 50.0, 2.0)
    assert tracker.guess_outage_tail(4.0)
    assert tracker.due(4.0, retries=False) == list(range(last + 85, last + 101))
    # 10 missing after a pause: the outage's run, NACKed in full, as without the guess
    assert not tracker.on_packet(last + 11, 4.01)
    assert tracker.take_confirmed_guess() is None and tracker.unasked_below == last + 1
    assert tracker.due(4.01, retries=False) == list(range(last + 1, last + 11))
    assert tracker.missing_count == 10  # the guessed ones are forgotten
    assert not tracker.on_packet(last + 40, 4.02)  # a gap of 28 after it: a burst again
    assert tracker.unasked_below == last + 40


def test_no_guess_without_a_rate_or_a_silence() -> None:
    tracker = NackTracker(outage_pause=0.25)
    assert not tracker.guess_outage_tail(1.0)  # nothing received
    tracker.on_packet(0, 0.0)
    tracker.on_packet(1, 0.02)
    assert not tracker.guess_outage_tail(5.0)  # no packet rate measured yet
    tracker = NackTracker(outage_pause=0.25)
    streaming(tracker, 50.0, 2.0)
    assert not tracker.guess_outage_tail(2.2)


# -- datagram batch ----------------------------------------------------------------------------
@pytest.mark.parametrize("read_interval", [0.0, 0.1], ids=["each-packet", "paced"])
async def test_the_first_datagram_after_a_silence_tells_the_path_is_back(
    fake_transport: dict[str, Any], monkeypatch: pytest.MonkeyPatch, read_interval: float
) -> None:
    """(Paced: the silence empties the socket, the pacer gives it back to the loop, and the
    datagram that ends the silence wakes the loop at once.)"""
    # Generous: a busy machine must not stall the loop past it between the steady datagrams.
    monkeypatch.setattr(datagram_batch, "PATH_SILENCE", 1.0)
    on_socket = batch_on_a_socket(fake_transport, read_interval=read_interval)
    async with on_socket as (batch, protocol, sender, address):
        got: list[int] = []
        told: list[int] = []  # how many packets had been handled when the path came back
        batch.add(
            fake_transport["receiver"],
            lambda packet, _ms: got.append(packet.sequence_number),
            on_path_back=lambda: told.append(len(got)),
        )
        for seq in range(5):  # steady
            sender.sendto(rtp(seq), address)
        await wait_for(lambda: len(got) == 5, limit=5.0)
        assert told == []
        await asyncio.sleep(1.1)  # an outage
        assert protocol.transport.is_reading()  # (paced: given back at the first empty tick)
        sender.sendto(rtp(5), address)
        await wait_for(lambda: len(got) == 6, limit=5.0)
        assert told == [6]  # after the datagram that ended it was handled
        sender.sendto(rtp(6), address)
        await wait_for(lambda: len(got) == 7, limit=5.0)
        assert told == [6]


# -- the pipeline against aiortc's sender ----------------------------------------------------
@pytest.mark.slow
async def test_after_an_outage_video_is_repaired_before_its_own_next_packet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All RTP is dropped for 0.6 s; then the path is back for audio and retransmissions
    while video's own packets stay dropped: the retransmissions the guess asked for arrive.

    The test tells the pipeline the path is back itself (the batch's part is tested above):
    RTCP and STUN are not dropped here, and one of them arriving late in the outage would
    make the batch tell it too early."""
    monkeypatch.setattr(datagram_batch, "PATH_SILENCE", float("inf"))
    async with loopback() as lb:
        media, rtx = video_pts(lb)
        assert rtx, "the loopback negotiates RTX"
        frames: list[int] = []
        lb.video.subscribe(lambda f: frames.append(1))
        await wait_for(lambda: len(frames) >= 50, limit=20.0)  # a packet rate is known
        before = lb.video.stats()
        lb.drop = lambda pt, seq: True  # all RTP, audio included
        await asyncio.sleep(0.6)
        lb.drop = lambda pt, seq: pt in media  # audio and RTX pass; video's own stays out
        lb.video.on_path_back()
        assert lb.video.stats().early_tail_nacks == before.early_tail_nacks + 1
        await wait_for(
            lambda: lb.video.stats().recovered_packets > before.recovered_packets, limit=20.0
        )
        assert lb.video.stats().plis_sent > before.plis_sent
        lb.drop = None
        n = len(frames)
        await wait_for(lambda: len(frames) >= n + 25, limit=20.0)  # and video flows again
