"""Audio QA fed chunk by chunk: loudness, silences, speech segments, dropouts inside speech.

- **Loudness**: integrated (LUFS) and true peak (dBTP), see :mod:`.loudness`.
- **Level**: RMS over all channels per 10 ms hop, in dBFS.
- **Silence**: at least 0.3 s of hops below -50 dBFS.
- **Speech**: :class:`~avatar_rtc.speech_detector.SpeechDetector` over the hops (starts above
  -40 dBFS, goes on above -50 dBFS, ends after 0.4 s below).
- **Dropout**: speech cut off mid-sound: a silence of 0.1 to 2 s (the pauses inside words,
  stop consonants, are shorter) that starts and ends with a step of 20 dB or more within
  20 ms, the loud side within 10 dB of the typical speech level: a voice fades, a cut does not
  (20 ms, not one hop: Opus decodes a cut with a short decaying tail that can split the step
  over two hops). From step to step. Synthetic voices pause that abruptly too: with the
  picture at hand, :mod:`.dropouts` keeps only the ones during which the mouth went on talking.
- **Pauses in speech**: every silence of 0.1 to 2 s between the first and the last speech,
  whatever its edges, for the mouth to judge too: an encoder smooths a cut into a fade (Opus:
  -35 to -50 dBFS over 80 ms, then on down), which the step rule misses. A pause the mouth
  confirms is reported from where its fade began (``fade_start``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..speech_detector import SpeechDetector
from .hops import HopCutter, Samples, mean_square
from .loudness import LoudnessMeter, LoudnessResult
from .spans import Span, true_runs

__all__ = ["AudioAnalyser", "AudioResult"]

logger = logging.getLogger(__name__)

DropoutCheck = Literal["level", "mouth"]

SILENCE_DB = -50.0
MIN_SILENCE = 0.3
DROPOUT_MIN = 0.1
DROPOUT_MAX = 2.0
DROPOUT_EDGE = 0.05  # seconds looked at on each side of a quiet run for the cut
DROPOUT_STEP = 20.0  # dB within 20 ms (two 10 ms hops): a cut, not a fade
DROPOUT_BELOW_SPEECH = 10.0  # dB below the median speech level the loud side may be
FLOOR_DB = -120.0
MAX_FADE = 0.15  # seconds a pause's fade is followed back from its silence
FADE_SLACK = 0.5  # dB a fading level may rise from one hop to the next (noise)


@dataclass
class AudioResult:
    """What :meth:`AudioAnalyser.result` found; times on the feeder's clock."""

    rate: int
    channels: int
    first_time: float | None
    hop: float
    levels_db: npt.NDArray[np.float64]  # per hop, from first_time
    loudness: LoudnessResult
    silences: list[Span] = field(default_factory=list)
    speech: list[Span] = field(default_factory=list)
    dropouts: list[Span] = field(default_factory=list)
    pauses: list[Span] = field(default_factory=list)  # in speech, any edges: for the mouth
    missing: list[Span] = field(default_factory=list)  # no audio came (set by MediaQa)
    dropout_check: DropoutCheck = "level"  # "mouth": confirmed by the picture (:mod:`.dropouts`)

    @property
    def duration(self) -> float:
        return len(self.levels_db) * self.hop

    def fade_start(self, pause: Span) -> Span:
        """``pause`` from the cut: the steepest fall of the fade that leads into it (at most
        ``MAX_FADE`` before; the encoder's tail decays from there)."""
        levels, hop, origin = self.levels_db, self.hop, self.first_time or 0.0
        end = round((pause.start - origin) / hop)
        lo = max(end - round(MAX_FADE / hop), 1)
        k = end
        while k > lo and levels[k - 1] >= levels[k] - FADE_SLACK:
            k -= 1  # back over the fade (the level falling, or flat)
        if k < end:
            k += int(np.argmax(levels[k:end] - levels[k + 1 : end + 1])) + 1
        start = origin + k * hop
        return Span(start, pause.end - start)


class AudioAnalyser:
    """Feed consecutive ``(channels, n)`` float32 chunks with the time of their first sample."""

    def __init__(
        self,
        rate: int,
        channels: int,
        *,
        silence_db: float = SILENCE_DB,
        min_silence: float = MIN_SILENCE,
    ) -> None:
        self.rate = rate
        self.channels = channels
        self.silence_db = silence_db
        self.min_silence = min_silence
        self._hops = HopCutter(rate)
        self._levels: list[float] = []
        self._loudness = LoudnessMeter(rate, channels)
        self._detector = SpeechDetector(stop_db=silence_db)
        self._speech: list[Span] = []
        self._speech_start: float | None = None

    def feed(self, samples: Samples, t: float) -> None:
        self._loudness.feed(samples)
        for start, hop in self._hops.cut(samples, t):
            ms = mean_square(hop)
            self._levels.append(10.0 * math.log10(ms) if ms > 1e-12 else FLOOR_DB)
            event = self._detector.feed(hop.reshape(-1), start, self._hops.hop)
            if event is None:
                continue
            if event.kind == "started":
                self._speech_start = event.time
            elif self._speech_start is not None:
                self._speech.append(Span(self._speech_start, event.time - self._speech_start))
                self._speech_start = None

    def result(self) -> AudioResult:
        levels = np.asarray(self._levels, dtype=np.float64)
        start = self._hops.start
        hop = self._hops.hop
        speech = list(self._speech)
        if self._speech_start is not None and start is not None:
            end = start + len(levels) * hop
            speech.append(Span(self._speech_start, end - self._speech_start))
        quiet = true_runs(levels < self.silence_db)
        origin = start or 0.0
        silences = [
            Span(origin + a * hop, (b - a) * hop)
            for a, b in quiet
            if (b - a) * hop >= self.min_silence - 1e-9
        ]
        return AudioResult(
            rate=self.rate,
            channels=self.channels,
            first_time=start,
            hop=hop,
            levels_db=levels,
            loudness=self._loudness.result(),
            silences=silences,
            speech=speech,
            dropouts=_dropouts(levels, quiet, speech, origin, hop),
            pauses=_pauses(quiet, speech, origin, hop),
        )


def _pauses(
    quiet: list[tuple[int, int]], speech: list[Span], origin: float, hop: float
) -> list[Span]:
    if not speech:
        return []
    first, last = speech[0].start, speech[-1].end
    spans = [Span(origin + a * hop, (b - a) * hop) for a, b in quiet]
    return [
        s
        for s in spans
        if DROPOUT_MIN <= s.duration + 1e-9 <= DROPOUT_MAX and first < s.start and s.end < last
    ]


def _dropouts(
    levels: npt.NDArray[np.float64],
    quiet: list[tuple[int, int]],
    speech: list[Span],
    origin: float,
    hop: float,
) -> list[Span]:
    if not speech:
        return []
    in_speech = np.zeros(len(levels), dtype=bool)
    for s in speech:
        in_speech[round((s.start - origin) / hop) : round((s.end - origin) / hop)] = True
    voiced = levels[in_speech & (levels > FLOOR_DB)]
    if voiced.size == 0:
        return []
    loud = float(np.median(voiced)) - DROPOUT_BELOW_SPEECH
    edge = max(round(DROPOUT_EDGE / hop), 1)
    found = []
    for a, b in quiet:
        # The decoder's tail can hold the level above the silence threshold for a few hops
        # after the cut: look for the step itself near each end of the quiet run.
        # (to a + 2: a step over two hops may end on the run's first quiet hop)
        cut = _step(levels, max(a - edge, 0), a + 2, loud, falling=True)
        resume = _step(levels, b - 1, min(b + edge, len(levels)), loud, falling=False)
        if cut is None or resume is None:
            continue
        duration = (resume - cut) * hop
        if DROPOUT_MIN <= duration + 1e-9 <= DROPOUT_MAX:
            found.append(Span(origin + cut * hop, duration))
            logger.debug("dropout at %.3f s for %.3f s", origin + cut * hop, duration)
    return found


def _step(
    levels: npt.NDArray[np.float64], lo: int, hi: int, loud: float, *, falling: bool
) -> int | None:
    """The first hop after a jump of at least ``DROPOUT_STEP`` dB within ``levels[lo:hi]``,
    from (falling) or to (rising) a level of at least ``loud``, over one hop or else over two
    (the jump then happened within the middle hop); None if there is none."""
    window = levels[lo:hi]
    for span in (1, 2):
        for k in range(len(window) - span):
            a, b = window[k], window[k + span]
            high, low = (a, b) if falling else (b, a)
            if high >= loud and high - low >= DROPOUT_STEP:
                return lo + k + 1
    return None
