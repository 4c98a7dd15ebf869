"""Under overload, NACK less than aiortc, not more; single losses are still NACKed.

Both policies run on the same simulated receive path, on a virtual clock: a 300 packet/s
video stream whose receiver stalls now and then (a busy event loop); during a stall the
socket buffer fills, and what arrives once it is full is dropped (``RcvbufErrors``), original
packets and retransmissions alike; after the stall the buffered packets arrive at once. The
sender retransmits every NACKed packet still in its 128-packet history, one RTT later (30 ms,
or 200 ms: an overloaded receiver reads its socket late).

- aiortc: its own ``NackGenerator`` (``aiortc.rtcrtpreceiver``), called as its receiver does:
  on every packet, and when it reports a new gap, one NACK listing every missing packet.
- ours: ``NackTracker`` called and configured as ``ReceivePipeline`` does: on every packet
  (first NACKs at once; a PLI instead when it says the gap is a burst) and on a 10 ms timer
  (echoes and retries), with the pipeline's horizon (``max_age`` = the jitter buffer's wait,
  ``retransmit_wait`` of the measured round trip, set on every timer tick).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

from avatar_rtc.rtc.nack import NackTracker
from avatar_rtc.rtc.receiver import NACK_ECHO_AFTER, retransmit_wait

RATE = 300  # packets/s (a 720p stream at ~2.5 Mbit/s)
HISTORY = 128  # aiortc's sender keeps this many packets for retransmission
SEQ0 = 65000  # wraps the 16-bit sequence number early on
TICK = 0.01
MAX_WAIT = 0.15  # ReceivePipeline's default jitter buffer wait = the NACK horizon


@dataclass
class Stall:
    start: float
    end: float
    full_at: float  # the socket buffer is full from here on: arrivals are dropped


@dataclass
class Result:
    nack_packets: int = 0
    nack_entries: int = 0
    plis: int = 0
    lost: set[int] = field(default_factory=set)  # originals dropped
    nacked: set[int] = field(default_factory=set)
    repaired: set[int] = field(default_factory=set)


def overload(seed: int, seconds: float = 20.0, buffer: int = 40) -> list[Stall]:
    """Loop stalls of 50-300 ms every 0.2-1 s; the buffer holds ``buffer`` packets."""
    rng = random.Random(seed)
    stalls, t = [], 0.5
    while t < seconds:
        length = rng.uniform(0.05, 0.3)
        stalls.append(Stall(t, t + length, t + buffer / RATE))
        t += length + rng.uniform(0.2, 1.0)
    return stalls


def simulate(
    policy: str,
    stalls: list[Stall],
    *,
    seconds: float = 20.0,
    random_loss: float = 0.0,
    seed: int = 0,
    rtt: float = 0.03,
) -> Result:
    """Run one policy; returns what it sent and what it repaired."""
    rng = random.Random(seed)
    result = Result()
    events: list[tuple[float, int, int, bool]] = []  # (time, order, seq, retransmission)
    order = 0
    for i in range(int(seconds * RATE)):
        events.append((i / RATE, order, i, False))
        order += 1
    if policy == "ours":
        events += [(k * TICK, -1, -1, False) for k in range(int(seconds / TICK))]
    heapq.heapify(events)
    aiortc = NackGenerator()
    ours = NackTracker(max_age=MAX_WAIT, echo_after=NACK_ECHO_AFTER)
    highest_sent = -1

    def deliver_at(t: float) -> float | None:
        """When a packet reaching the socket at ``t`` is read (None: dropped on overflow)."""
        for s in stalls:
            if s.start <= t < s.end:
                return None if t >= s.full_at else s.end
        return t

    def nack(now: float, seqs: list[int]) -> None:
        nonlocal order
        result.nack_packets += 1
        result.nack_entries += len(seqs)
        for seq in seqs:
            result.nacked.add(seq)
            if seq > highest_sent - HISTORY:
                order += 1
                heapq.heappush(events, (now + rtt, order, seq, True))

    while events:
        t, _, seq, rtx = heapq.heappop(events)
        if seq < 0:  # our pipeline's timer; it does not run while the loop stalls
            ours.max_age = retransmit_wait(MAX_WAIT, ours.rtt)
            lost = ours.due(t) if deliver_at(t) == t else []
            if lost:
                nack(t, lost)
            continue
        if not rtx:
            highest_sent = max(highest_sent, seq)
        read = deliver_at(t)
        if read is None or (not rtx and rng.random() < random_loss):
            if not rtx:
                result.lost.add(seq)
            continue
        if read > t:  # held in the socket buffer until the stall ends
            heapq.heappush(events, (read, order, seq, rtx))
            order += 1
            continue
        if rtx:
            result.repaired.add(seq)
        if policy == "aiortc":
            packet = RtpPacket(sequence_number=(SEQ0 + seq) & 0xFFFF)
            if aiortc.add(packet):
                nack(t, sorted((s - SEQ0) % 65536 for s in aiortc.missing))
        else:
            if not ours.on_packet(seq, t):
                result.plis += 1
            lost = ours.due(t, retries=False)
            if lost:
                nack(t, lost)
    return result


@pytest.mark.parametrize("rtt", [0.03, 0.2])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_overload_bursts_get_fewer_nacks_than_aiortc(seed: int, rtt: float) -> None:
    stalls = overload(seed)
    theirs = simulate("aiortc", stalls, random_loss=0.005, seed=seed, rtt=rtt)
    ours = simulate("ours", stalls, random_loss=0.005, seed=seed, rtt=rtt)
    assert theirs.lost == ours.lost and len(ours.lost) > 500  # same losses, mostly bursts
    print(
        f"\nseed {seed}, rtt {rtt}: {len(ours.lost)} lost of {20 * RATE}; NACK packets/entries "
        f"aiortc {theirs.nack_packets}/{theirs.nack_entries}, "
        f"ours {ours.nack_packets}/{ours.nack_entries} (+{ours.plis} PLI requests); "
        f"repaired aiortc {len(theirs.repaired)}, ours {len(ours.repaired)}"
    )
    assert ours.nack_entries <= theirs.nack_entries
    assert ours.nack_packets <= theirs.nack_packets
    assert ours.plis > 0  # the bursts were answered with a keyframe request instead
    singles = {s for s in ours.lost if s - 1 not in ours.lost and s + 1 not in ours.lost}
    assert len(singles) > 10 and singles <= ours.nacked  # isolated losses are still NACKed


def test_single_random_losses_are_all_nacked() -> None:
    ours = simulate("ours", [], random_loss=0.02, seed=7)
    assert len(ours.lost) > 50
    assert ours.lost <= ours.nacked and ours.lost == ours.repaired
    assert ours.plis == 0


def test_a_long_burst_is_not_nacked_but_a_short_one_is() -> None:
    tracker = NackTracker(max_burst=16)
    assert tracker.on_packet(0, 0.0)
    assert not tracker.on_packet(201, 0.0)  # 200 missing: a PLI, not 200 NACK entries
    assert tracker.due(0.0) == [] and tracker.bursts == 1
    assert tracker.on_packet(205, 0.0)
    assert tracker.due(0.0) == [202, 203, 204]
    assert tracker.unasked_below == 201


def test_after_an_outage_the_tail_of_the_run_is_nacked_once_in_full() -> None:
    """A run that ends after a pause in arrivals is the network's: its last ``outage_tail``
    packets are asked for at once, past the budget; one that ends without a pause (an
    overflowing socket buffer hands over what it held first) gets no NACK."""
    tracker = NackTracker(max_burst=16, budget_burst=32, outage_tail=128, outage_pause=0.25)
    tracker.on_packet(0, 0.0)
    tracker.on_packet(1, 0.04)
    assert not tracker.on_packet(302, 2.04)  # 2 s of silence, 300 missing
    assert tracker.unasked_below == 302 - 128
    assert tracker.on_packet(303, 2.041)  # the grant outlives a packet before the NACK goes
    assert tracker.due(2.041, retries=False) == list(range(174, 302))
    assert not tracker.on_packet(600, 2.05)  # a burst without a pause: a PLI only
    assert tracker.unasked_below == 600
    assert tracker.due(2.05, retries=False) == []
    assert tracker.bursts == 2


def test_nack_budget_and_horizon() -> None:
    tracker = NackTracker(budget=0.1, budget_burst=4, max_age=0.15, max_burst=100)
    tracker.on_packet(0, 0.0)
    tracker.on_packet(11, 0.0)  # ten missing, four tokens
    assert tracker.due(0.0) == [1, 2, 3, 4]
    assert tracker.due(0.01) == []  # no tokens left
    for seq in range(12, 32):  # twenty packets earn two tokens
        tracker.on_packet(seq, 0.02)
    assert tracker.due(0.05) == [5, 6]  # first NACKs before retries
    assert tracker.due(0.2) == []  # past the jitter buffer's horizon: given up
    assert tracker.missing_count == 0
    assert tracker.throttled == 4  # 7..10 were never NACKed for want of budget


def test_the_wait_follows_the_measured_round_trip() -> None:
    assert retransmit_wait(0.15, None) == 0.15  # nothing measured yet
    assert retransmit_wait(0.15, 0.01) == 0.15  # never below the base
    assert retransmit_wait(0.15, 0.1) == pytest.approx(0.35)  # three round trips + slack
    assert retransmit_wait(0.15, 0.16) == 0.5  # capped: a keyframe repairs sooner
    # too long for two retries: one retry's answer (echo 0.02 + 2.2 x 0.4 + slack)
    assert retransmit_wait(0.15, 0.4) == pytest.approx(0.95)
    assert retransmit_wait(0.15, 2.0) == 0.5  # not even one retry in time


def test_a_round_trip_longer_than_the_base_wait_is_learnt_then_waited_for() -> None:
    tracker = NackTracker(max_age=MAX_WAIT)
    tracker.on_packet(0, 0.0)
    tracker.on_packet(2, 0.0)
    assert tracker.due(0.0) == [1]
    assert tracker.due(0.2) == []  # past the base horizon: given up
    tracker.on_packet(1, 0.2)  # the retransmission, late: it measures the round trip
    assert tracker.rtt == pytest.approx(0.2)
    tracker.max_age = retransmit_wait(MAX_WAIT, tracker.rtt)  # as the pipeline's timer does
    assert tracker.max_age == pytest.approx(0.51)  # one retry's answer (0.02 + 2.2 x 0.2 + 0.05)
    tracker.on_packet(3, 1.0)
    tracker.on_packet(5, 1.0)
    assert tracker.due(1.0) == [4]  # its retransmission is lost too
    assert tracker.due(1.25) == [4]  # retried one round trip (x1.2) later, still in time
    assert tracker.due(1.44) == []
    tracker.on_packet(4, 1.45)
    assert tracker.recovered == 1 and tracker.missing_count == 0


def test_retransmissions_after_the_hole_was_given_up_are_counted_apart() -> None:
    tracker = NackTracker(max_age=MAX_WAIT)
    tracker.on_packet(0, 0.0)
    tracker.on_packet(3, 0.0)
    assert tracker.due(0.0) == [1, 2]
    assert tracker.awaited == 2
    tracker.forget_before(2)  # the jitter buffer went on without 1
    assert tracker.awaited == 1
    tracker.on_packet(1, 0.15, retransmission=True)
    tracker.on_packet(1, 0.16, retransmission=True)  # an echo's duplicate: counted once
    tracker.on_packet(2, 0.15, retransmission=True)
    assert (tracker.recovered, tracker.late_repairs, tracker.awaited) == (1, 1, 0)
    tracker.on_packet(4, 1.0)
    tracker.on_packet(6, 1.0)
    tracker.due(1.0)
    tracker.forget_before(6)
    tracker.on_packet(5, 1.2)  # a first transmission reordered, not a repair
    assert tracker.late_repairs == 1
