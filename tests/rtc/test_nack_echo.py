"""NACK echoes: a first NACK sent again ``echo_after`` later, where a second round trip is long.

With independent loss, a lost NACK or a lost retransmission then costs no extra round trip;
never on a short round trip (a retry comes soon enough), under high loss, or after a burst or
a stall (our own overload, an outage: NACK less there, not more).
"""

from __future__ import annotations

from avatar_rtc.rtc.nack import NackTracker

ECHO = 0.02


def tracker_with_rtt(rtt: float, **kwargs: float) -> NackTracker:
    """A tracker that measured ``rtt`` (one loss repaired after it), at t = 1.0."""
    tracker = NackTracker(echo_after=ECHO, max_age=1.0, **kwargs)  # type: ignore[arg-type]
    tracker.on_packet(0, 0.0)
    tracker.on_packet(2, 0.0)
    assert tracker.due(0.0) == [1]
    repaired = False
    for seq in range(3, 60):  # over a second of packets: the loss fraction is measured
        t = 1.19 * (seq - 2) / 57
        if not repaired and t >= rtt:
            tracker.on_packet(1, rtt, retransmission=True)
            repaired = True
        tracker.on_packet(seq, t)
    assert tracker.rtt == rtt and tracker.loss_fraction < 0.05  # (the one loss: 2 %)
    return tracker


def test_a_first_nack_is_echoed_once_on_a_long_round_trip() -> None:
    tracker = tracker_with_rtt(0.1)
    tracker.on_packet(61, 1.2)  # 60 lost
    assert tracker.due(1.2) == [60]
    assert tracker.due(1.21) == []  # not yet
    assert tracker.due(1.2 + ECHO) == [60]  # the echo
    assert tracker.echoes == 1
    assert tracker.due(1.2 + ECHO + 0.05) == []  # the retry waits a round trip (x1.2)
    assert tracker.due(1.2 + ECHO + 0.121) == [60]
    assert tracker.echoes == 1


def test_no_echo_when_the_packet_came_first_or_the_round_trip_is_short() -> None:
    tracker = tracker_with_rtt(0.1)
    tracker.on_packet(61, 1.2)
    assert tracker.due(1.2) == [60]
    tracker.on_packet(60, 1.21, retransmission=True)
    assert tracker.due(1.2 + ECHO) == [] and tracker.echoes == 0
    short = tracker_with_rtt(0.03)
    short.on_packet(61, 1.2)
    assert short.due(1.2) == [60]
    assert short.due(1.2 + ECHO) == []  # a retry after 1.2 round trips is soon enough
    assert short.echoes == 0


def test_no_echo_after_a_burst_or_for_an_outages_tail() -> None:
    tracker = tracker_with_rtt(0.1)
    assert not tracker.on_packet(100, 1.2)  # 40 missing at once: a burst (a PLI instead)
    tracker.on_packet(102, 1.21)
    assert tracker.due(1.21) == [101]
    assert tracker.due(1.21 + ECHO) == []  # within the quiet time after a burst
    assert tracker.echoes == 0


def test_no_echo_under_high_loss() -> None:
    tracker = tracker_with_rtt(0.1, echo_max_loss=0.15)
    seq, t = 60, 1.2
    for _ in range(60):  # a second with every fourth packet lost: 25 %
        seq += 1 if seq % 4 else 2
        tracker.on_packet(seq, t)
        tracker.due(t, retries=False)
        t += 0.02
    assert tracker.loss_fraction > 0.15
    echoes = tracker.echoes
    tracker.on_packet(seq + 2, t)
    assert seq + 1 in tracker.due(t)
    assert seq + 1 not in tracker.due(t + ECHO)  # (retries of older ones may be due)
    assert tracker.echoes == echoes


def test_no_echo_after_a_stall() -> None:
    """Packets that come after 0.1 s without any: a stalled event loop read its socket late
    (our own overload) or the path paused; no echoes for a while."""
    tracker = tracker_with_rtt(0.1)
    tracker.on_packet(60, 1.5)  # 0.32 s after the last one
    tracker.on_packet(62, 1.5)
    assert tracker.due(1.5) == [61]
    assert tracker.due(1.5 + ECHO) == []
    assert tracker.echoes == 0
