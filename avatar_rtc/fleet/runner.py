"""run_job: one session of a :class:`~.jobs.FleetJob`, in whatever process runs it.

Connect -> the job's sink (decoder streams, or a recorder) -> first frame (time to first
frame) -> say the job's speech (say -> speech: until the speech detector hears it) -> run
``duration`` seconds, or until ``stop`` is set -> finalise the file -> close the session ->
(``qa``) analyse the file and write the report next to it. Never raises for a failed session:
the error is in the result (``ok``, ``error``, ``exit_code``); the file the worker wrote is
on the worker's disk. A job without speech runs with ``detect_speech=False``: nothing would
listen, and decoding the audio for it was ~40 % of a copy-record session's CPU. Video decodes
on the worker's event loop (``decode_video_on_loop``): a worker's sessions share one core, and
a decoder thread per session cost more than it kept off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import AvatarRTCError, NoMediaError
from ..media.formats import AudioFormat, VideoFormat
from ..media.frames import VideoFrame
from ..options import SessionOptions
from ..record.options import RecordMode, RecordOptions
from ..record.recorder import Recorder
from ..redact import redact, register_secret
from ..rtc.encoded_frame import EncodedFrame
from ..session import AvatarSession, SessionEvent
from .jobs import FleetJob, JobResult, Utterance

__all__ = ["FrameSink", "FrameWatch", "run_job"]

logger = logging.getLogger(__name__)

# Decoded frames to the caller: True when handed over (the shared ring had a free slot).
FrameSink = Callable[[int, VideoFrame], bool]

CLOSE_TIMEOUT = 10.0  # bound on ending the session once the media part is done
MAX_FPS = 30  # of the video a decode job expects (the service sends 25)


async def run_job(
    job: FleetJob, *, stop: asyncio.Event | None = None, frames: FrameSink | None = None
) -> JobResult:
    """Run ``job`` to the end (see the module docstring); ``frames``: where a ``decode`` job
    with ``share_frames`` hands its frames."""
    result = JobResult(job.index, job.kind, worker=f"{socket.gethostname()}:{os.getpid()}")
    register_job_secrets(job.options)
    try:
        await _run(job, result, stop or asyncio.Event(), frames)
        if job.kind == "qa" and result.file is not None:
            await asyncio.to_thread(_analyse, Path(result.file), result)
    except AvatarRTCError as exc:
        result.error, result.exit_code = redact(str(exc)), exc.exit_code
    except (OSError, ValueError, RuntimeError) as exc:
        result.error, result.exit_code = redact(f"{type(exc).__name__}: {exc}"), 1
    result.ok = result.error is None
    return result


def register_job_secrets(options: SessionOptions) -> None:
    """Register the secrets of ``options`` in this process: unpickled Secrets and IceServers
    skip their ``__init__``, so a worker's logs would not mask them."""
    for secret in (options.ks, options.bearer):
        if secret is not None:
            register_secret(secret.reveal())
    for server in options.ice.extra_servers:
        server.register_secrets()


async def _run(
    job: FleetJob, result: JobResult, stop: asyncio.Event, frames: FrameSink | None
) -> None:
    listen = job.options.detect_speech and bool(job.speech)
    options = replace(job.options, detect_speech=listen, decode_video_on_loop=True)
    session = AvatarSession(options)
    await session.start()
    lost = asyncio.Event()  # the media ended for good: the job ends there, failed
    session.on("error", lambda event: lost.set())
    try:
        watch = FrameWatch(job.sender_epoch)
        recorder, consumers = _attach_sink(job, session, watch, result, frames)
        try:
            try:
                await session.wait_first_frame(job.options.connect_timeout)
            except TimeoutError:
                raise NoMediaError(
                    f"no video frame within {job.options.connect_timeout:g} s"
                ) from None
            result.ttff_s = session.timings.total
            watch.start_after(job.warmup)
            speech = asyncio.create_task(_speak(session, job.speech, result))
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(job.duration):
                        await _first_of(stop, lost)
                result.interrupted = stop.is_set()
            finally:
                speech.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speech
        finally:
            for task in consumers:
                task.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
            if recorder is not None:
                stats = await recorder.astop()
                result.file = stats.path
                result.media_seconds = stats.duration
        watch.report(result)
        video = session.stats().video
        result.nacks_sent, result.plis_sent = video.nacks_sent, video.plis_sent
        if recorder is None:
            result.media_seconds = watch.span
        if session.error is not None:  # (what the file holds is kept: ``result.file``)
            raise session.error
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await session.close()


def _attach_sink(
    job: FleetJob,
    session: AvatarSession,
    watch: FrameWatch,
    result: JobResult,
    frames: FrameSink | None,
) -> tuple[Recorder | None, list[asyncio.Task[None]]]:
    """The job's use of the media, in place before the first frame arrives."""
    path = job.output_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode: RecordMode = "encode" if job.kind == "encode-record" else "copy"
        recorder = session.record(path, RecordOptions(mode=mode))
        session.video_pipeline.subscribe(watch.on_encoded)
        return recorder, []
    share = frames if job.share_frames else None
    # Shared frames are converted once, straight into the ring: the stream converts nothing.
    # Two frames of slack (the figures count frames handed out: a consumer a frame late now
    # and then is not a lost frame, as it is to a model that wants only the newest), and
    # room for the frames a paced read (read_interval) hands over at once.
    burst = math.ceil(job.options.read_interval * MAX_FPS)
    video = session.video(VideoFormat(pixel_format=None if share else "rgb24"), capacity=2 + burst)
    audio = session.audio(AudioFormat())

    async def consume_video() -> None:
        async for frame in video:
            if share is not None:
                if share(job.index, frame):
                    result.frames_shared += 1
                else:
                    result.frames_not_shared += 1
            else:
                frame.to_ndarray()
            watch.on_frame(frame.rtp_timestamp)

    async def consume_audio() -> None:
        async for chunk in audio:
            chunk.array  # noqa: B018  # the numpy array is the point of a decode job

    return None, [asyncio.create_task(consume_video()), asyncio.create_task(consume_audio())]


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _speak(session: AvatarSession, speech: tuple[Utterance, ...], result: JobResult) -> None:
    """Say everything in order; the first utterance is timed until speech is heard."""
    if not speech:
        return
    said: list[float] = []

    def heard(event: SessionEvent) -> None:
        if said and result.say_to_speech_s is None:
            result.say_to_speech_s = event.time - said[0]

    forget = session.on("speaking_started", heard)
    try:
        for utterance in speech:
            said.append(time.monotonic())
            if utterance.kind == "text":
                await session.say(utterance.value)
            else:
                await session.say_audio(utterance.value)
        await asyncio.Event().wait()  # until cancelled: the handler keeps listening
    finally:
        forget()


def _analyse(path: Path, result: JobResult) -> None:
    """QA of the recording; the report is written next to it (``session-000.qa.json``)."""
    from ..qa import analyse_file

    report = analyse_file(path)
    data = report.to_dict()
    report_path = path.with_suffix(".qa.json")
    report_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    result.report_file = str(report_path)
    result.verdict = report.verdict
    result.lipsync_offset_ms = data["lipsync"]["offset_ms"]
    video = data.get("video")
    duration = float(data["duration_s"])
    if video is not None and duration > 0:
        result.freezes_per_minute = len(video["freezes"]) * 60.0 / duration


class FrameWatch:
    """Hand-out times of video frames: fps, worst whole second, latency to the sender."""

    def __init__(self, sender_epoch: float | None = None) -> None:
        self._epoch = sender_epoch
        self._from = float("inf")  # counting starts with start_after()
        self.times: list[float] = []
        self.latencies: list[float] = []

    def start_after(self, seconds: float) -> None:
        """Count the frames handed out from ``seconds`` from now on."""
        self._from = time.monotonic() + seconds

    def on_encoded(self, frame: EncodedFrame) -> None:
        self.add(frame.arrival_time, frame.rtp_timestamp)

    def on_frame(self, rtp_timestamp: int) -> None:
        self.add(time.monotonic(), rtp_timestamp)

    def add(self, now: float, rtp_timestamp: int) -> None:
        """A frame (its sender RTP timestamp) handed out at ``now`` (monotonic)."""
        if now < self._from:
            return
        self.times.append(now)
        if self._epoch is not None:
            self.latencies.append(now - (self._epoch + rtp_timestamp / 90000))

    @property
    def span(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def report(self, result: JobResult) -> None:
        times = self.times
        result.video_frames = len(times)
        if self.span > 0:
            result.fps = (len(times) - 1) / self.span
        whole = int(self.span)
        if whole >= 1:
            counts = [0] * whole
            for t in times:
                second = int(t - times[0])
                if second < whole:
                    counts[second] += 1
            result.worst_second_fps = float(min(counts))
        if self.latencies:
            ordered = sorted(self.latencies)
            result.latency_p95_ms = 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
