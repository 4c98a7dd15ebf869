"""Network figures of a live session: counters sampled every second, jitter, the ICE pair.

- **packets**/**bytes**: RTP packets (retransmissions included) and payload bytes received.
- **lost**: packets the sender sent on the media stream that never arrived (RTCP's cumulative
  loss: before any retransmission repaired them); **loss_pct**: of those expected.
- **nacks**/**recovered**: NACKs sent, and lost packets a retransmission brought back;
  **late_repairs**: retransmissions that came after the picture had gone on without them.
- **unrepaired**/**residual_loss_pct**: packets lost for good, not even retransmitted
  (``ReceiveStats.unrepaired``), and their share of those expected: the loss that shows.
- **plis**: keyframe requests sent (PLI).
- **jitter_ms**: RFC 3550 interarrival jitter (``J += (|D| - J) / 16``, ``D`` the change of
  transit time between consecutive frames), per frame as it leaves the jitter buffer: for
  audio one frame is one packet (the RFC's figure), for video the arrival of a frame's last
  packet (what decoding waits for).
- **kbps**: payload bitrate over each interval (over the whole session in the totals).
- **selected pair**: the candidate types and addresses of the nominated ICE pair; relayed:
  the TURN URL and how the TURN server is reached (``turn_transport``: udp, tcp or tls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: a file's QA does not load the network stack
    from ..rtc.candidate_pair import SelectedPair
    from ..rtc.encoded_frame import EncodedFrame
    from ..rtc.receiver import ReceiveStats

__all__ = ["JitterMeter", "NetworkResult", "NetworkSample", "TrackSample"]


class JitterMeter:
    """RFC 3550 interarrival jitter of one track, fed its frames in order (seconds)."""

    def __init__(self) -> None:
        self.jitter = 0.0
        self._last: tuple[float, float] | None = None  # (arrival, rtp seconds)

    def feed(self, frame: EncodedFrame) -> None:
        now = (frame.arrival_time, frame.rtp_timestamp / frame.clock_rate)
        if self._last is not None:
            d = (now[0] - self._last[0]) - (now[1] - self._last[1])
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._last = now


@dataclass(frozen=True, slots=True)
class TrackSample:
    stats: ReceiveStats
    jitter: float  # seconds


@dataclass(frozen=True, slots=True)
class NetworkSample:
    """The receive counters of both tracks at ``time`` (on the analysers' clock)."""

    time: float
    video: TrackSample
    audio: TrackSample


@dataclass
class NetworkResult:
    samples: list[NetworkSample] = field(default_factory=list)
    selected_pair: SelectedPair | None = None

    def to_dict(self, origin: float) -> dict[str, Any]:
        pair = self.selected_pair
        samples = self.samples
        totals: dict[str, Any] = {"video": None, "audio": None}
        if samples:
            span = samples[-1].time - samples[0].time
            totals["video"] = _totals(samples[0].video, samples[-1].video, span)
            totals["audio"] = _totals(samples[0].audio, samples[-1].audio, span)
        return {
            "selected_pair": _pair(pair),
            "turn_transport": pair.relay_transport if pair is not None else None,
            **totals,
            "timeline": [_point(now, before, origin) for before, now in pairwise(samples)],
        }


def _pair(pair: SelectedPair | None) -> dict[str, Any] | None:
    if pair is None:
        return None
    return {
        "local_type": pair.local_type,
        "local_address": f"{pair.local_address[0]}:{pair.local_address[1]}",
        "remote_type": pair.remote_type,
        "remote_address": f"{pair.remote_address[0]}:{pair.remote_address[1]}",
        "protocol": pair.protocol,
        "relay_url": pair.relay_url,
    }


def _kbps(now: TrackSample, before: TrackSample, seconds: float) -> float | None:
    if seconds <= 0:
        return None
    return round((now.stats.bytes - before.stats.bytes) * 8 / seconds / 1000.0, 1)


def _totals(first: TrackSample, last: TrackSample, span: float) -> dict[str, Any]:
    s = last.stats
    expected = s.expected
    return {
        "codec": s.codec,
        "packets": s.packets,
        "bytes": s.bytes,
        "lost": s.lost,
        "loss_pct": round(100.0 * max(s.lost, 0) / expected, 2) if expected else None,
        "nacks": s.nacks_sent,
        "recovered": s.recovered_packets,
        "late_repairs": s.late_repairs,
        "unrepaired": s.unrepaired,
        "residual_loss_pct": round(100.0 * s.unrepaired / expected, 2) if expected else None,
        "retransmitted": s.rtx_packets,
        "plis": s.plis_sent,
        "jitter_ms": round(last.jitter * 1000.0, 2),
        "kbps": _kbps(last, first, span),
    }


def _point(now: NetworkSample, before: NetworkSample, origin: float) -> dict[str, Any]:
    """Counters at ``now`` (cumulative) and the bitrate since ``before``."""
    seconds = now.time - before.time

    def track(a: TrackSample, b: TrackSample) -> dict[str, Any]:
        return {
            "packets": a.stats.packets,
            "lost": a.stats.lost,
            "nacks": a.stats.nacks_sent,
            "plis": a.stats.plis_sent,
            "jitter_ms": round(a.jitter * 1000.0, 2),
            "kbps": _kbps(a, b, seconds),
        }

    return {
        "t_s": round(now.time - origin, 3),
        "video": track(now.video, before.video),
        "audio": track(now.audio, before.audio),
    }
