"""ReceiveStats: packets expected, and those lost for good after NACK/RTX."""

from __future__ import annotations

from typing import Any

from avatar_rtc.rtc.receiver import ReceiveStats


def receive_stats(**counters: int) -> ReceiveStats:
    """Video stats with the given counters, every other one 0."""
    zero: dict[str, Any] = dict(packets=0, bytes=0, rtx_packets=0, late_packets=0, lost=0,
                                frames=0, keyframes=0, frames_dropped=0, nacks_sent=0,
                                nacked_packets=0, recovered_packets=0, plis_sent=0,
                                sender_reports=0)  # fmt: skip
    return ReceiveStats(kind="video", codec="H264", clock_source=None, **{**zero, **counters})


def test_retransmissions_over_rtx_are_taken_off_the_loss() -> None:
    # 1000 sent, 50 first transmissions lost, 48 came back over RTX: 2 never
    stats = receive_stats(packets=950 + 48, rtx_packets=48, lost=50, recovered_packets=48)
    assert (stats.expected, stats.unrepaired) == (1000, 2)


def test_a_late_repair_is_received_and_an_awaited_one_not_lost_yet() -> None:
    stats = receive_stats(packets=950 + 49, rtx_packets=49, lost=50, recovered_packets=48,
                          late_repairs=1, repairs_awaited=1)  # fmt: skip
    assert (stats.expected, stats.unrepaired) == (1000, 0)


def test_without_rtx_the_loss_count_already_nets_retransmissions() -> None:
    # (a retransmission on the media SSRC is a received packet of it, not a loss)
    stats = receive_stats(packets=990, lost=10, recovered_packets=7)
    assert (stats.expected, stats.unrepaired) == (1000, 10)
    assert (receive_stats().expected, receive_stats().unrepaired) == (0, 0)
