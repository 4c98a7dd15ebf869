"""The job description every engine runs, and what a job reports back.

A :class:`FleetJob` is plain, picklable data (it crosses process and machine boundaries: the
local pool pipes it to a worker process, Ray ships it to a node); a :class:`JobResult` comes
back the same way. Job kinds, by what the session does with the media:

- ``decode``: decode video and audio to numpy (frames may be shared with the caller);
- ``copy-record``: record the received streams to a file as they are (no decode);
- ``encode-record``: decode and re-encode to a file;
- ``qa``: copy-record, then run the media QA on the file and write its JSON report.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ..errors import ConfigurationError
from ..options import SessionOptions

__all__ = [
    "DEFAULT_SAY",
    "JOB_KINDS",
    "RECORD_READ_INTERVAL",
    "FleetJob",
    "JobKind",
    "JobResult",
    "Utterance",
    "not_run",
]

JobKind = Literal["decode", "copy-record", "encode-record", "qa"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)

# What a session says when the caller gives nothing (service or emulator targets): enough
# speech for say->speech and for the lip-sync measure.
DEFAULT_SAY = "This is a fleet session checking speech and lip sync."

# The fleet command's SessionOptions.read_interval for recordings (``--job record``): half a
# copy-mode recording's CPU (rtc/read_pacer.py) for 0.1 s more latency, which a file does not
# show. Not for ``qa``: its time to first frame and say -> speech would include it.
RECORD_READ_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class Utterance:
    """``kind`` "text": ``value`` is said; "audio": ``value`` is an audio file's path."""

    kind: Literal["text", "audio"]
    value: str


@dataclass(frozen=True)
class FleetJob:
    """One session to run. ``index`` names it (``session-007.mp4``) and orders the reports.

    - ``duration``: seconds of media after the first frame (recorded or decoded).
    - ``speech``: said in order once the first frame arrived (needs the Control API).
    - ``out_dir``: where the recording and QA report go (record and qa kinds).
    - ``share_frames``: ``decode`` only: hand the frames to the caller (shared memory).
    - ``sender_epoch``: ``time.monotonic()`` of RTP time 0 at a sender on this machine (the
      emulator's fan-out load generator): frame latency is measured against it.
    - ``warmup``: seconds after the first frame left out of the frame figures (fps, worst
      second, latency): benchmarks skip the start-up of the other sessions.
    """

    index: int
    kind: JobKind
    options: SessionOptions
    duration: float = 5.0
    speech: tuple[Utterance, ...] = ()
    out_dir: str | None = None
    container: str = "mp4"
    share_frames: bool = False
    sender_epoch: float | None = None
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ConfigurationError(f"job kind {self.kind!r}: one of {', '.join(JOB_KINDS)}")
        if not 0 < self.duration < math.inf or not 0 <= self.warmup < self.duration:  # (NaN too)
            raise ConfigurationError("duration must be > 0 and finite, warmup within [0, duration)")
        if self.kind != "decode" and self.out_dir is None:
            raise ConfigurationError(f"a {self.kind} job needs out_dir")

    @property
    def name(self) -> str:
        return f"session-{self.index:03d}"

    @property
    def output_path(self) -> Path | None:
        """The recording's path (record and qa kinds), on the disk of the process running it."""
        if self.out_dir is None or self.kind == "decode":
            return None
        return Path(self.out_dir) / f"{self.name}.{self.container}"


@dataclass
class JobResult:
    """What one job measured; ``None`` where a figure does not apply or could not be taken.

    - ``ttff_s``: session start until the first decoded video frame.
    - ``say_to_speech_s``: the first say call until the avatar was heard speaking.
    - ``lipsync_offset_ms`` / ``freezes_per_minute``: from the QA report (``qa`` jobs).
    - ``fps`` / ``worst_second_fps``: video frames handed out (decoded, or complete encoded
      frames when recording) over the run, and in its worst whole second.
    - ``latency_p95_ms``: send (``sender_epoch``) to hand-out, 95th percentile.
    - ``interrupted``: the engine was stopped (a signal) before ``duration`` ran out: the
      session ended early; its figures cover what ran.
    - ``not_run``: the engine was stopped before the job started: not a failure, no figures.
    """

    index: int
    kind: JobKind
    ok: bool = False
    interrupted: bool = False
    not_run: bool = False
    error: str | None = None
    exit_code: int = 0
    file: str | None = None
    report_file: str | None = None
    verdict: str | None = None  # the QA verdict: "pass" / "fail"
    ttff_s: float | None = None
    say_to_speech_s: float | None = None
    lipsync_offset_ms: float | None = None
    freezes_per_minute: float | None = None
    media_seconds: float = 0.0
    video_frames: int = 0
    fps: float | None = None
    worst_second_fps: float | None = None
    latency_p95_ms: float | None = None
    nacks_sent: int = 0
    plis_sent: int = 0
    frames_shared: int = 0
    frames_not_shared: int = 0  # no free shared-memory slot: the caller was behind
    worker: str | None = None  # which process (host:pid) ran it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def not_run(job: FleetJob, why: str) -> JobResult:
    """The result of ``job`` when the engine was stopped before it started."""
    return JobResult(job.index, job.kind, not_run=True, error=why)
