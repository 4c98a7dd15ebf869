"""AvClock: one presentation clock per session, shared by the audio and the video track.

Every RTP timestamp is mapped to *presentation seconds* on one session-wide time line:

- **arrival** (until the track has an RTCP sender report): the track advances with its RTP
  clock from an anchor on the arrival time line (``time.monotonic()`` minus the session origin):
  the *fastest* transit seen so far (a late first frame does not delay the track for good).
  Cross-track alignment is only as good as the senders' pacing and the network jitter.
- **rtcp-sr**: ``SR.ntp + (rtp - SR.rtp) / clock_rate - ntp_origin``. ``ntp_origin`` is
  chosen once per session (at the first SR of any track), so both tracks share the sender's
  wall clock and are aligned as the sender meant them to be.

Master track (``master="audio"``): audio timestamps stay sample-exact (consecutive frames
exactly ``samples / rate`` apart), video adapts. Audio is anchored on its first frame's arrival
and never moved; when a later audio frame shows a faster transit (the first one was late by
``lag``), video is anchored ``lag`` later instead, so the two stay aligned (also once audio
is on SR timing, which goes on where its arrival timing had put it). Video switches
to SR timing only after audio did (or after ``master_wait`` s without an audio SR), so the
session origin is set by audio and audio never needs a correction from the same sender
(after a reconnect, a new sender's audio is slewed onto the time line as video is); later
audio SRs within ``master_tolerance`` of the current mapping are ignored. Without an audio
track, video works alone.

SR noise: some senders (aiortc) stamp an SR with the time their last packet was *sent*, a few
ms (under load, tens of ms) after its capture. The mapping uses, of the last ``sr_window`` SRs
of a track, the one with the earliest NTP time for its RTP time (a windowed minimum, so slow
clock drift still passes), and a track switches to SR timing only once it has ``min_srs``.

Continuity: whenever a track's mapping changes after its first frame (arrival -> SR, a newer
SR that disagrees by a few ms, a faster arrival), the difference is turned into a per-track
*correction* so that the output does not jump; the correction is then slewed back to zero at
``slew_rate`` seconds per second of media (10 % by default: a 50 ms difference is gone after
0.5 s), from the track's previous frame on (a gap in its frames is media time too). Because
the slew is slower than media time, the output stays strictly monotonic; a final clamp
guards against reordered RTP timestamps. Differences above ``max_correction``
(e.g. the sender restarted its clock) are applied as a jump instead of being slewed.

All methods are called from the event-loop thread (the receive pipelines); no locking.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["AvClock", "ClockSource"]

logger = logging.getLogger(__name__)

ClockSource = Literal["rtcp-sr", "arrival"]

_NTP_SCALE = float(1 << 32)


@dataclass(slots=True)
class _Track:
    ssrc: int
    clock_rate: int
    source: ClockSource
    # mapping: out_raw = anchor_time + (rtp - anchor_rtp) / clock_rate
    anchor_rtp: int
    anchor_time: float
    # The first frame (its RTP timestamp and arrival, origin-relative): transits are measured
    # from it on every timing.
    first_rtp: int
    first_time: float
    correction: float = 0.0
    min_transit: float | None = None  # fastest transit seen, origin-relative
    last_rtp: int | None = None
    last_out: float | None = None
    pending_sr: tuple[float, int] | None = None  # (ntp seconds, 32-bit rtp timestamp)
    srs: list[tuple[float, int]] = field(default_factory=list)  # recent (ntp s, unwrapped rtp)
    sr_used: tuple[float, int] | None = None

    def raw(self, rtp: int) -> float:
        return self.anchor_time + (rtp - self.anchor_rtp) / self.clock_rate


class AvClock:
    """Maps ``(kind, rtp_timestamp)`` to presentation seconds; see the module docstring."""

    def __init__(
        self,
        *,
        slew_rate: float = 0.1,
        max_correction: float = 1.0,
        sr_window: int = 8,
        master: str | None = "audio",
        master_wait: float = 3.0,
        master_tolerance: float = 0.005,
        min_srs: int = 2,
    ) -> None:
        if not 0.0 < slew_rate < 1.0:
            raise ValueError("slew_rate must be in (0, 1) to keep timestamps monotonic")
        self._master = master
        self._master_wait = master_wait
        self._master_tolerance = master_tolerance
        self._min_srs = min_srs
        # How late the master is presented against its fastest transit (video follows).
        self._lag = 0.0
        self._slew_rate = slew_rate
        self._max_correction = max_correction
        self._sr_window = sr_window
        self._origin: float | None = None  # monotonic time of the first frame of the session
        self._ntp_origin: float | None = None  # NTP seconds that map to presentation 0
        self._tracks: dict[str, _Track] = {}
        self._early_sr: dict[tuple[str, int], tuple[float, int]] = {}

    @property
    def origin(self) -> float | None:
        """``time.monotonic()`` of the first frame of the session (presentation time ~0)."""
        return self._origin

    def source(self, kind: str) -> ClockSource | None:
        track = self._tracks.get(kind)
        return None if track is None else track.source

    def correction(self, kind: str) -> float:
        """Seconds by which ``kind``'s timestamps still differ from its mapping (being slewed
        away after a mapping change; 0.0 once settled or before the track's first frame)."""
        track = self._tracks.get(kind)
        return 0.0 if track is None else track.correction

    def on_sender_report(
        self, kind: str, ssrc: int, ntp_timestamp: int, rtp_timestamp: int
    ) -> None:
        """Record an RTCP SR (64-bit NTP, 32-bit RTP); applied at the track's next frame.

        An SR with NTP time 0 is ignored: aiortc sends one (RTP 0 too) when its RTCP timer
        fires before the stream's first packet; taken as the earliest report, it moved a
        track by the whole NTP era (4.0e9 s) and broke the recording's timestamps.
        """
        if ntp_timestamp == 0:
            return
        sr = (ntp_timestamp / _NTP_SCALE, rtp_timestamp & 0xFFFFFFFF)
        track = self._tracks.get(kind)
        if track is not None and track.ssrc == ssrc:
            track.pending_sr = sr
        else:
            # SR before the first frame (or of a new SSRC): keep the newest for later.
            self._early_sr[(kind, ssrc)] = sr

    def reset(self, kind: str) -> None:
        """Forget a track (e.g. its SSRC changed); the session origin stays."""
        self._tracks.pop(kind, None)

    def map(
        self, kind: str, ssrc: int, rtp_timestamp: int, clock_rate: int, arrival_time: float
    ) -> tuple[float, ClockSource]:
        """Presentation time of a frame with the (64-bit unwrapped) ``rtp_timestamp``."""
        if self._origin is None:
            self._origin = arrival_time
        track = self._tracks.get(kind)
        if track is None or track.ssrc != ssrc or track.clock_rate != clock_rate:
            first_time = max(0.0, arrival_time - self._origin)
            track = _Track(
                ssrc=ssrc,
                clock_rate=clock_rate,
                source="arrival",
                anchor_rtp=rtp_timestamp,
                anchor_time=first_time,
                first_rtp=rtp_timestamp,
                first_time=first_time,
            )
            track.pending_sr = self._early_sr.pop((kind, ssrc), None)
            self._tracks[kind] = track

        # The fastest transit seen: a first frame that arrived late (encoder start-up, a big
        # keyframe, a burst) must not delay the whole track.
        transit = arrival_time - self._origin - (rtp_timestamp - track.first_rtp) / clock_rate
        if track.min_transit is None or transit < track.min_transit:
            track.min_transit = transit

        if track.pending_sr is not None and self._may_apply_sr(kind, arrival_time):
            self._apply_sr(kind, track, rtp_timestamp)
        if track.source == "arrival" and kind != self._master:  # (an SR may not switch it yet)
            target = track.min_transit + self._lag
            if track.last_out is None:
                track.anchor_time = target  # first frame: no earlier output to continue
            elif abs(target - track.anchor_time) > 0.002:
                before = track.raw(rtp_timestamp) + track.correction
                track.anchor_time = target
                track.correction = before - track.raw(rtp_timestamp)  # slewed away

        # Slew the correction towards zero by the media time since the track's last frame: a
        # gap in its frames (a sender that skipped ahead, lost frames) is time it slews too.
        if track.last_rtp is not None and track.correction != 0.0:
            step = self._slew_rate * max(0, rtp_timestamp - track.last_rtp) / clock_rate
            if abs(track.correction) <= step:
                track.correction = 0.0
            else:
                track.correction -= step if track.correction > 0 else -step

        out = track.raw(rtp_timestamp) + track.correction
        if track.last_out is not None and out < track.last_out:
            out = track.last_out  # reordered timestamps: never go backwards
        track.last_rtp = rtp_timestamp
        track.last_out = out
        if kind == self._master:
            # How late the master is presented against its fastest transit: video is anchored
            # as late. Also once the master is on SR timing (it goes on where its arrival timing
            # had put it) and video is not yet: a faster audio packet still tells.
            presented = out - (rtp_timestamp - track.first_rtp) / clock_rate
            self._lag = max(0.0, presented - track.min_transit)
        return out, track.source

    def _may_apply_sr(self, kind: str, arrival_time: float) -> bool:
        """Other tracks switch to SR timing only after the master (audio) did, so that the
        session origin is set by the master and its timestamps never need a correction."""
        if self._master is None or kind == self._master or self._ntp_origin is not None:
            return True
        master = self._tracks.get(self._master)
        if master is None or self._origin is None:
            return True  # no master track (yet): don't wait for it
        return arrival_time - self._origin > self._master_wait

    def _apply_sr(self, kind: str, track: _Track, rtp: int) -> None:
        assert track.pending_sr is not None
        ntp_s, sr_rtp32 = track.pending_sr
        track.pending_sr = None
        # Unwrap the SR's 32-bit RTP timestamp next to the frame's 64-bit one.
        diff = (sr_rtp32 - rtp) & 0xFFFFFFFF
        if diff >= 1 << 31:
            diff -= 1 << 32
        track.srs.append((ntp_s, rtp + diff))
        del track.srs[: -self._sr_window]
        if track.source == "arrival" and len(track.srs) < self._min_srs:
            # One SR alone may be stamped late (send-time stamping under load): wait for a
            # second one so the windowed minimum below can filter it.
            return
        # Of the recent SRs use the one with the earliest NTP for its RTP time: senders that
        # stamp SRs with their *send* time (aiortc) add a few ms of noise, always late.
        ntp_s, sr_rtp = min(track.srs, key=lambda sr: sr[0] - sr[1] / track.clock_rate)
        if track.source == "rtcp-sr" and track.sr_used == (ntp_s, sr_rtp):
            return
        track.sr_used = (ntp_s, sr_rtp)
        before = track.raw(rtp) + track.correction
        if self._ntp_origin is None:
            # First SR of the session: choose the origin so that this track does not move.
            self._ntp_origin = ntp_s + (rtp - sr_rtp) / track.clock_rate - before
        old_anchor = (track.anchor_rtp, track.anchor_time)
        track.anchor_rtp = sr_rtp
        track.anchor_time = ntp_s - self._ntp_origin
        after = track.raw(rtp)
        correction = before - after
        if (
            kind == self._master
            and track.source == "rtcp-sr"
            and abs(correction) < self._master_tolerance
        ):
            # The master keeps sample-exact timestamps: ignore SR jitter of a few ms.
            track.anchor_rtp, track.anchor_time = old_anchor
            return
        if abs(correction) > self._max_correction:
            logger.warning(
                "AvClock(%s): sender report moves the clock by %.3f s; jumping", kind, -correction
            )
            correction = 0.0
            track.last_out = None  # allow a backwards jump on purpose
        if track.source != "rtcp-sr":
            logger.debug(
                "AvClock(%s): switching to RTCP SR mapping (offset %.4f s)", kind, correction
            )
        track.correction = correction
        track.source = "rtcp-sr"

    def now(self) -> float:
        """Current time on the arrival scale (seconds since the session's first frame)."""
        if self._origin is None:
            return 0.0
        return time.monotonic() - self._origin
