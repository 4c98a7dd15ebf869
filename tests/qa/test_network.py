"""The network section's totals: loss before and after repair, from the receive counters."""

from __future__ import annotations

from avatar_rtc.qa.network import NetworkResult, NetworkSample, TrackSample
from tests.rtc.test_receive_stats import receive_stats


def test_totals_give_the_loss_that_shows_after_repair() -> None:
    start = TrackSample(receive_stats(), jitter=0.0)
    # 1000 sent, 50 lost, 46 repaired in time and 1 too late, 1 still asked for: 2 for good
    video = TrackSample(receive_stats(packets=950 + 47, bytes=500_000, rtx_packets=47, lost=50,
                                      recovered_packets=46, late_repairs=1, repairs_awaited=1,
                                      nacks_sent=9),
                        jitter=0.004)  # fmt: skip
    audio = TrackSample(receive_stats(packets=500, bytes=40_000), jitter=0.001)
    result = NetworkResult([NetworkSample(10.0, start, start), NetworkSample(20.0, video, audio)])
    totals = result.to_dict(origin=10.0)
    assert totals["video"]["loss_pct"] == 5.0  # before repair
    assert totals["video"]["recovered"] == 46 and totals["video"]["late_repairs"] == 1
    assert totals["video"]["unrepaired"] == 2 and totals["video"]["residual_loss_pct"] == 0.2
    assert totals["video"]["kbps"] == 400.0 and totals["video"]["jitter_ms"] == 4.0
    assert totals["audio"]["unrepaired"] == 0 and totals["audio"]["residual_loss_pct"] == 0.0
    assert [point["t_s"] for point in totals["timeline"]] == [10.0]
