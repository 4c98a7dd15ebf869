"""Lip sync: the offset between mouth motion and speech, with a confidence and a verdict.

Sign: **positive = the sound comes before the picture** (audio leads), in ms.

The audio side is the speech envelope: the level of 10 ms hops in dB (floored 50 dB below the
loudest hops, lightly smoothed). The picture side comes from :mod:`.mouth`. For every candidate
offset ``d`` (5 ms steps, within ±``MAX_LAG``, 2.5 s: the emulator's largest injected desync,
2 s, is measured, not folded into a wrong smaller one as with ±0.6 s, or read at the edge of
±1.5 s with a low confidence, an ``unknown`` that passed) the envelope is read at the frames'
times minus ``d`` and compared, by Pearson correlation, in two ways:

- the mouth's **openness** with the envelope;
- the mouth's **motion** between two frames with the envelope's **change** between the same two
  times (motion energy follows the change of the sound, not its level, and belongs to the
  interval between the two frames, not to either frame).

The offset is the peak of the mean of the two correlation curves, refined between the grid
points by a parabola through the peak and its neighbours (sub-frame resolution: the envelope
has 10 ms resolution whatever the frame rate). The confidence is the height of that peak
(0..1); below ``min_confidence`` the verdict is ``unknown``.

Verdict bands, ITU-R BT.1359: ``pass`` within +45/-125 ms (not detectable), ``warn`` within
+90/-185 ms (acceptable), ``fail`` outside.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from .hops import HopCutter, Samples, mean_square
from .mouth import MouthSource, MouthTracker
from .video import GrayImage

__all__ = ["LipSyncAnalyser", "LipSyncResult", "SyncBands", "Verdict", "sync_verdict"]

logger = logging.getLogger(__name__)

Verdict = Literal["pass", "warn", "fail", "unknown"]
Floats = npt.NDArray[np.float64]

MAX_LAG = 2.5  # seconds searched on each side
LAG_BLOCK = 100  # lags correlated at once (memory: LAG_BLOCK x frames values, twice)
LAG_STEP = 0.005
ENVELOPE_RANGE_DB = 50.0  # the envelope floor, below the loudest hops
SMOOTH_HOPS = 3
MIN_CONFIDENCE = 0.4
MIN_FRAMES = 50  # fewer mouth samples than this: no estimate


@dataclass(frozen=True, slots=True)
class SyncBands:
    """Offsets in ms (positive: sound first) of the BT.1359 bands."""

    pass_lead_ms: float = 45.0
    pass_lag_ms: float = 125.0
    warn_lead_ms: float = 90.0
    warn_lag_ms: float = 185.0
    min_confidence: float = MIN_CONFIDENCE


def sync_verdict(offset_ms: float | None, confidence: float, bands: SyncBands) -> Verdict:
    if offset_ms is None or confidence < bands.min_confidence:
        return "unknown"
    if -bands.pass_lag_ms <= offset_ms <= bands.pass_lead_ms:
        return "pass"
    if -bands.warn_lag_ms <= offset_ms <= bands.warn_lead_ms:
        return "warn"
    return "fail"


@dataclass(frozen=True)
class LipSyncResult:
    offset_ms: float | None
    confidence: float
    verdict: Verdict
    mouth_source: MouthSource | None
    # Per analysed frame: time and openness (0..255 darkness of the mouth box); per pair of
    # frames: the midpoint of their times and the mouth's motion between them.
    mouth_times: Floats = field(default_factory=lambda: np.zeros(0))
    mouth_openness: Floats = field(default_factory=lambda: np.zeros(0))
    motion_times: Floats = field(default_factory=lambda: np.zeros(0))
    motion: Floats = field(default_factory=lambda: np.zeros(0))


class LipSyncAnalyser:
    """Feed grey frames and audio chunks (any order between the two, each in time order)."""

    def __init__(
        self,
        *,
        bands: SyncBands | None = None,
        tracker: MouthTracker | None = None,
        max_lag: float = MAX_LAG,
    ) -> None:
        self.bands = bands or SyncBands()
        self.max_lag = max_lag
        self._tracker = tracker or MouthTracker()
        self._hops: HopCutter | None = None
        self._power: list[float] = []
        self._times: list[float] = []
        self._openness: list[float] = []
        self._motion: list[tuple[float, float, float]] = []  # (prev_time, time, motion)

    def feed_video(self, gray: GrayImage, t: float) -> None:
        features = self._tracker.feed(gray, t)
        if features is None:
            return
        self._times.append(features.time)
        self._openness.append(features.openness)
        if features.motion is not None:
            self._motion.append((features.prev_time, features.time, features.motion))

    def feed_audio(self, samples: Samples, t: float, rate: int) -> None:
        if self._hops is None:
            self._hops = HopCutter(rate)
        for _, hop in self._hops.cut(samples, t):
            self._power.append(mean_square(hop))

    def result(self) -> LipSyncResult:
        times = np.asarray(self._times)
        openness = np.asarray(self._openness)
        source = self._tracker.source
        offset, confidence = self._estimate(times, openness)
        verdict = sync_verdict(offset, confidence, self.bands)
        logger.debug("lip sync %s ms, confidence %.2f: %s", offset, confidence, verdict)
        motion = np.asarray(self._motion).reshape(-1, 3)
        return LipSyncResult(
            offset,
            confidence,
            verdict,
            source,
            mouth_times=times,
            mouth_openness=openness,
            motion_times=(motion[:, 0] + motion[:, 1]) / 2.0,
            motion=motion[:, 2],
        )

    def _envelope(self) -> tuple[Floats, Floats] | None:
        """(hop centre times, envelope in dB above its floor), or None without sound."""
        if self._hops is None or self._hops.start is None or len(self._power) < SMOOTH_HOPS:
            return None
        power = np.asarray(self._power, dtype=np.float64)
        if not np.any(power > 1e-12):
            return None
        db = 10.0 * np.log10(np.maximum(power, 1e-12))
        floor = float(np.percentile(db, 99)) - ENVELOPE_RANGE_DB
        env = np.maximum(db, floor) - floor
        kernel = np.ones(SMOOTH_HOPS) / SMOOTH_HOPS
        env = np.convolve(env, kernel, mode="same").astype(np.float64)
        centres = self._hops.start + (np.arange(len(env), dtype=np.float64) + 0.5) * self._hops.hop
        return centres, env

    def _estimate(self, times: Floats, openness: Floats) -> tuple[float | None, float]:
        envelope = self._envelope()
        if envelope is None or len(times) < MIN_FRAMES or len(self._motion) < MIN_FRAMES:
            return None, 0.0
        env_t, env = envelope
        motion = np.asarray(self._motion)
        lags = np.arange(-self.max_lag, self.max_lag + LAG_STEP / 2, LAG_STEP)

        def env_at(t: Floats, block: Floats) -> Floats:
            # rows: lags; NaN outside the audio so those frames drop out of the correlation
            shifted = t[None, :] - block[:, None]
            values = np.interp(shifted, env_t, env)
            values[(shifted < env_t[0]) | (shifted > env_t[-1])] = np.nan
            return values

        curve = np.empty(len(lags))
        for i in range(0, len(lags), LAG_BLOCK):  # (a long file's frames x every lag: GBs)
            block = lags[i : i + LAG_BLOCK]
            r_open = _pearson_rows(env_at(times, block), openness)
            change = np.abs(env_at(motion[:, 1], block) - env_at(motion[:, 0], block))
            curve[i : i + LAG_BLOCK] = (r_open + _pearson_rows(change, motion[:, 2])) / 2.0
        if not np.any(np.isfinite(curve)):
            return None, 0.0
        best = int(np.nanargmax(curve))
        confidence = float(np.clip(curve[best], 0.0, 1.0))
        shift = _parabola_vertex(curve, best)
        offset_ms = 1000.0 * (float(lags[best]) + shift * LAG_STEP)
        return round(offset_ms, 1), round(confidence, 3)


def _pearson_rows(rows: Floats, y: Floats) -> Floats:
    """Pearson correlation of each row of ``rows`` with ``y``, ignoring NaN columns."""
    out = np.full(rows.shape[0], np.nan)
    for i, x in enumerate(rows):
        ok = np.isfinite(x)
        if np.count_nonzero(ok) < MIN_FRAMES:
            continue
        xs, ys = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
        denominator = math.sqrt(float(np.dot(xs, xs)) * float(np.dot(ys, ys)))
        if denominator > 0:
            out[i] = float(np.dot(xs, ys)) / denominator
    return out


def _parabola_vertex(curve: Floats, i: int) -> float:
    """Where, in grid steps from ``i``, the parabola through ``i - 1, i, i + 1`` peaks."""
    if i == 0 or i == len(curve) - 1:
        return 0.0
    a, b, c = curve[i - 1], curve[i], curve[i + 1]
    denominator = a - 2.0 * b + c
    if not np.isfinite(denominator) or denominator >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / denominator, -0.5, 0.5))
