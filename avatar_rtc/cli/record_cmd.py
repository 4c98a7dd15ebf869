"""``avatar-rtc record OUT``: record the avatar to a file (MP4, MKV or WebM).

Flow: check the options and OUT (before connecting) -> connect (progress shows the phase) ->
start the recorder (the file starts at the first video keyframe) -> wait for the first frame
-> say each ``--say``/``--say-audio`` in order -> stop on ``--duration`` seconds of recorded
media, on ``--until-idle`` (implied by speech without ``--duration``), or on SIGINT/SIGTERM ->
finalise the file -> (``--report``: analyse it, write ``OUT.qa.json``) -> summary.

Exit status: the error's ``exit_code`` (``avatar-rtc --help``): 0 done; 2 bad options or OUT
unusable; 3 no media arrived, or it stopped arriving; 4 ``--report`` found a threshold
breached; 7 the connection was lost; 130 after Ctrl-C (SIGINT), 143 after SIGTERM, with the
file finalised and the summary printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    AvatarRTCError,
    ConfigurationError,
    ConnectError,
    NoMediaError,
    ThresholdError,
)
from ..redact import redact
from ..tasks import cancel_and_wait
from .arguments import (
    SESSION_STACK,
    add_command,
    add_speech_options,
    add_target_options,
    parse_size,
    positive_float,
)
from .exit_status import exit_code_of, print_error
from .output_file import check_output_file
from .progress import Progress, ProgressSample, format_duration, format_size
from .qa_cmd import check_qa_extra, report_beside

if TYPE_CHECKING:
    # The media stack loads when a recording runs, not for --help (see main.py).
    from ..record import EncodeOptions, RecordedStreamStats, Recorder, RecorderStats, StreamRoute
    from ..session import AvatarSession
    from .arguments import Speech
    from .common import StopSignals, Target

__all__ = ["register", "run"]

COMMAND = "record"
DEFAULT_IDLE_CAP = 300.0  # --until-idle without --duration: never record forever by accident
END_SLACK = 0.01  # stop this early: frames already in flight still reach the file
POLL = 0.02  # how often the recorded duration is checked near the end (<< one video frame)
STALL_GRACE = 5.0  # media stopped arriving: give up this long after the wall-clock duration
CLOSE_TIMEOUT = 10.0  # bound on ending the session once the file is final
PHASE_LABELS = {  # SessionTimings phases, as the progress line shows them
    "session": "creating the session",
    "offer_answer": "WHEP offer/answer",
    "ice_dtls": "ICE/DTLS",
    "first_keyframe": "waiting for the first keyframe",
    "first_frame": "decoding the first frame",
}

DESCRIPTION = """\
Record the avatar (default: the embedded emulator) to OUT (.mp4 fragmented, .mkv or .webm).
OUT is checked before connecting; an existing file is kept unless --force."""

EPILOG = """\
With --say/--say-audio and without --duration, recording stops once the avatar has spoken (as
with --until-idle). --until-idle needs --say or --say-audio: the avatar speaks only when asked.
Without speech, --duration or --until-idle, recording runs until Ctrl-C.

Progress (stderr): the start-up phase while connecting, then the time recording, the media
in the file (against --duration), fps, bitrate and dropped frames.

Ctrl-C (SIGINT) or SIGTERM stop the recording cleanly: the file is finalised and the summary
printed, then the exit status is 130 (SIGINT) or 143 (SIGTERM). A second signal aborts at once
(the file is still playable up to its last fragment)."""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        COMMAND,
        help="record the avatar's audio and video to a file",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("out", metavar="OUT", help="output file: .mp4, .mkv or .webm")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    add_speech_options(parser, "once the first frame arrived")
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="S",
        help="stop after S seconds of recorded media (with --until-idle: the cap; default: none)",
    )
    parser.add_argument(
        "--until-idle",
        action="store_true",
        help=f"stop once the avatar has finished speaking; needs --say/--say-audio (cap: "
        f"--duration, default {DEFAULT_IDLE_CAP:.0f} s)",
    )
    parser.add_argument(
        "--mode",
        choices=("copy", "encode"),
        default="copy",
        help="copy the received streams (video the container cannot hold, e.g. H264 in "
        ".webm, is re-encoded) or decode and re-encode everything (default %(default)s)",
    )
    encode = parser.add_argument_group("encode mode")
    encode.add_argument(
        "--size", type=_size, metavar="WxH", help="scale the video (default: as received)"
    )
    encode.add_argument(
        "--fps", type=positive_float, help="cap the frame rate (default: as received)"
    )
    encode.add_argument(
        "--video-codec",
        choices=("libx264", "libvpx", "libvpx-vp9"),
        help="video encoder (default: libx264 for .mp4/.mkv, libvpx for .webm)",
    )
    encode.add_argument(
        "--audio-codec",
        choices=("aac", "libopus"),
        help="audio encoder (default: aac for .mp4, libopus for .mkv/.webm)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    output.add_argument("--json", action="store_true", help="print the summary as JSON")
    output.add_argument(
        "--report",
        action="store_true",
        help="analyse OUT once final (as `avatar-rtc qa OUT`) and write the report to "
        "OUT.qa.json; exit 4 when a threshold is breached",
    )
    add_target_options(parser)
    parser.set_defaults(handler=run, imports=(*SESSION_STACK, "avatar_rtc.record"))


def _size(value: str) -> tuple[int, int]:
    width, height = parse_size(value)
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"width and height must be even and >= 2: {value!r}")
    return width, height


def encode_options(args: argparse.Namespace) -> EncodeOptions | None:
    """EncodeOptions of the encode flags (None in copy mode); error when given in copy mode."""
    from ..record import EncodeOptions

    given = [
        name
        for name in ("size", "fps", "video_codec", "audio_codec")
        if getattr(args, name) is not None
    ]
    if args.mode == "copy":
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigurationError(f"{flags} only {verb} to --mode encode")
        return None
    width, height = args.size if args.size else (None, None)
    return EncodeOptions(
        width=width,
        height=height,
        fps=args.fps,
        video_codec=args.video_codec,
        audio_codec=args.audio_codec,
    )


def check_until_idle(args: argparse.Namespace) -> None:
    """``--until-idle`` waits for the avatar to finish speaking: it must be asked to speak."""
    if args.until_idle and not args.speech:
        raise ConfigurationError(
            "--until-idle needs --say or --say-audio: the avatar speaks only when asked, "
            "so it would stop at once"
        )


def run(args: argparse.Namespace) -> int:
    # Imported here: the session options and the recorder load the media stack.
    from ..record import EncodeOptions, RecordError
    from ..record.encoder import resolve_codecs
    from ..record.options import container_for_path
    from .common import run_command, target_from_args
    from .speech import check_speech

    try:
        target = target_from_args(args)
        encode = encode_options(args)
        # The extension chooses the container; the offer never depends on it (every codec we
        # can receive unless --codec says otherwise): video it cannot hold is re-encoded.
        spec = container_for_path(args.out)
        if args.mode == "encode":
            try:  # (the recorder checks it too, but only once connected)
                resolve_codecs(spec, encode or EncodeOptions())
            except RecordError as exc:
                raise ConfigurationError(str(exc)) from None
        check_output_file(args.out, force=args.force)
        if args.report:
            check_qa_extra("--report")
            check_output_file(str(report_beside(args.out)), force=args.force)
        check_speech(args.speech, target)
        check_until_idle(args)
    except ConfigurationError as exc:
        print_error(COMMAND, exc)
        return exc.exit_code
    return run_command(COMMAND, lambda stop: _record(args, target, encode, stop))


@dataclass
class _Outcome:
    # duration | idle | cap | signal | stalled | disconnected | error | no-media
    reason: str = "duration"
    error: BaseException | None = None


async def _record(
    args: argparse.Namespace, target: Target, encode: EncodeOptions | None, stop: StopSignals
) -> int:
    from ..record import EncodeOptions, RecordError
    from ..record.options import RecordOptions
    from ..session import AvatarSession
    from .common import announce_reconnects, open_target

    progress = None if args.no_progress else Progress(sys.stderr)
    async with open_target(target) as options:
        session = AvatarSession(options)
        await _connect(session, target, progress)  # a signal now cancels (nothing to save yet)
        announce_reconnects(session, COMMAND, progress.finish if progress is not None else None)
        try:
            recording = RecordOptions(mode=args.mode, encode=encode or EncodeOptions())
            recorder = session.record(args.out, recording)
            # From here on a signal means "finish the file", not "abort".
            stop.interruptible = False
            started = time.monotonic()
            ticker = asyncio.create_task(_show_progress(progress, recorder, started, args.duration))
            try:
                outcome = await _drive(args, session, recorder, stop, target)
            finally:
                await cancel_and_wait(ticker)
            try:
                stats = await recorder.astop()
            except RecordError as exc:  # the writer failed: still show what the file holds
                stats = recorder.stats()
                outcome = _Outcome("error", exc)
            qa: _QaOutcome | None = None
            if args.report and (stats.video.frames or stats.audio.frames):
                qa = await _analyse(args.out)
            if progress is not None:
                progress.update(_sample(stats, started, args.duration), force=True)
                progress.finish()
            _print_summary(args, target, stats, outcome, time.monotonic() - started, qa)
        finally:
            # The file is complete: ending the session must not hold the exit for long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await session.close()  # (a loss for good is the outcome's error already)
    if outcome.error is not None:
        print_error(COMMAND, outcome.error)
        return exit_code_of(outcome.error)
    if stats.video.frames == 0 and stats.audio.frames == 0:
        no_media = NoMediaError("no media was recorded")
        print_error(COMMAND, no_media)
        return stop.exit_code or no_media.exit_code
    if qa is not None and qa.error is not None:
        print_error(COMMAND, qa.error)
    return stop.exit_code or (qa.exit_code if qa is not None else 0)


@dataclass
class _QaOutcome:
    """What ``--report`` found: the report's file and verdict, or why there is none."""

    path: str | None = None
    verdict: str | None = None
    error: BaseException | None = None

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return exit_code_of(self.error)
        return 0 if self.verdict == "pass" else ThresholdError.exit_code

    def to_dict(self) -> dict[str, Any]:
        error = None if self.error is None else str(self.error)
        return {"file": self.path, "verdict": self.verdict, "error": error}


async def _analyse(out: str) -> _QaOutcome:
    """``--report``: the QA report of the final file, written to ``OUT.qa.json``."""
    from ..qa import analyse_file

    path = report_beside(out)
    try:
        report = await asyncio.to_thread(analyse_file, out)
        text = json.dumps(report.to_dict(), indent=2)
        path.write_text(text + "\n", encoding="utf-8")
    except (AvatarRTCError, OSError) as exc:
        return _QaOutcome(error=exc)
    return _QaOutcome(str(path), report.verdict)


async def _connect(session: AvatarSession, target: Target, progress: Progress | None) -> None:
    """Start the session, showing the start-up phase under way."""
    ticker = None
    if progress is not None:
        ticker = asyncio.create_task(_show_connecting(progress, session, target))
    try:
        await session.__aenter__()
    except BaseException:
        if progress is not None:
            progress.finish()  # the error line starts on a line of its own
        raise
    finally:
        if ticker is not None:
            await cancel_and_wait(ticker)


async def _show_connecting(progress: Progress, session: AvatarSession, target: Target) -> None:
    started = time.monotonic()
    control_api = target.kind != "whep"
    while True:
        phase = session.timings.pending(control_api=control_api) or "first_keyframe"
        progress.connecting(target.describe(), PHASE_LABELS[phase], time.monotonic() - started)
        await asyncio.sleep(0.25 if progress.tty else 0.05)


async def _drive(
    args: argparse.Namespace,
    session: AvatarSession,
    recorder: Recorder,
    stop: StopSignals,
    target: Target,
) -> _Outcome:
    """Wait for the first frame, speak, and wait for the end condition."""
    from .common import first_frame_or_stop

    try:
        stopped = await first_frame_or_stop(stop, session, target.connect_timeout)
    except AvatarRTCError as exc:  # NoMediaError when no frame came in time
        return _Outcome("no-media", exc)
    if stopped:
        return _Outcome("signal")

    # Speech without --duration: stop when it has been said (else it would run until Ctrl-C).
    until_idle = bool(args.until_idle or (args.speech and args.duration is None))
    limit: float | None = args.duration
    if until_idle and limit is None:
        limit = DEFAULT_IDLE_CAP
    speak = asyncio.create_task(_speak(session, args.speech, until_idle))
    recorded = asyncio.ensure_future(_recorded(recorder, limit)) if limit is not None else None
    lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    forget = session.on("disconnected", lambda event: _set_once(lost, str(event.data)))
    # A writer that failed (disk full...) writes nothing more: end now, not at --duration.
    failed = asyncio.ensure_future(_writer_failed(recorder))
    waits: list[asyncio.Future[Any]] = [
        speak,
        lost,
        failed,
        asyncio.ensure_future(stop.event.wait()),
    ]
    if recorded is not None:
        waits.append(recorded)
    outcome = _Outcome()
    try:
        while True:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if stop.event.is_set():
                outcome.reason = "signal"
                break
            if failed in done:  # (stopping the recorder raises its error)
                outcome.reason = "error"
                break
            if lost in done:
                # (the loss's typed reason, set before "disconnected": its exit code)
                error = session.error or ConnectError(f"disconnected: {lost.result()}")
                outcome = _Outcome("disconnected", error)
                break
            if speak in done:
                if speak.exception() is not None:
                    outcome = _Outcome("error", speak.exception())
                    break
                if until_idle:
                    outcome.reason = "idle"
                    break
                waits.remove(speak)  # spoken; keep recording until the duration / a signal
                continue
            if recorded is not None and recorded in done:
                if recorded.result():
                    outcome = _Outcome("stalled", NoMediaError("media stopped arriving"))
                else:
                    outcome.reason = "cap" if until_idle else "duration"
                break
    finally:
        forget()
        for waiter in waits:
            waiter.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*waits, return_exceptions=True)
    return outcome


def _set_once(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


async def _speak(session: AvatarSession, speech: list[Speech], until_idle: bool) -> None:
    from .speech import speak

    await speak(session, speech)
    if until_idle:
        await session.wait_idle(None)


async def _writer_failed(recorder: Recorder) -> None:
    """Return once the recorder's writer has failed (set on its thread: polled)."""
    while True:
        await asyncio.sleep(0.1)
        if recorder.error is not None:
            return


async def _recorded(recorder: Recorder, seconds: float) -> bool:
    """Return once the file holds ``seconds`` of every stream; True if it stalled instead.

    The muxer holds the last video frame back (its duration is only known from the next
    one), so the video in the file reaches one frame further than the stats say.
    """
    deadline = time.monotonic() + seconds + STALL_GRACE
    while True:
        stats = recorder.stats()
        remaining = seconds - recorded_seconds(stats.video, stats.audio) - END_SLACK
        if remaining <= 0:
            return False
        if time.monotonic() >= deadline:
            return True
        await asyncio.sleep(POLL if remaining < 0.5 else min(0.25, remaining / 2))


def recorded_seconds(video: RecordedStreamStats, audio: RecordedStreamStats) -> float:
    """How far every stream of the file reaches (the shortest one), in seconds."""
    starts = [s.start for s in (video, audio) if s.start is not None]
    if not starts:
        return 0.0
    ends: list[float] = []
    if video.end is not None and video.start is not None:
        # + the held-back frame, estimated by the mean frame interval so far
        frame = (video.end - video.start) / video.frames if video.frames > 0 else 0.0
        ends.append(video.end + frame)
    if audio.end is not None:
        ends.append(audio.end)
    return min(ends) - min(starts)


async def _show_progress(
    progress: Progress | None, recorder: Recorder, started: float, limit: float | None
) -> None:
    if progress is None:
        return
    while True:
        progress.update(_sample(recorder.stats(), started, limit))
        await asyncio.sleep(0.25 if progress.tty else 1.0)


def _sample(stats: RecorderStats, started: float, limit: float | None = None) -> ProgressSample:
    now = time.monotonic()
    return ProgressSample(
        at=now,
        elapsed=now - started,
        media_seconds=stats.duration,
        video_frames=stats.video.frames,
        total_bytes=stats.video.bytes + stats.audio.bytes,
        dropped=stats.dropped,
        limit=limit,
    )


def summary(
    stats: RecorderStats, outcome: _Outcome, wall: float, qa: _QaOutcome | None = None
) -> dict[str, Any]:
    """The end-of-run summary as plain data (also what ``--json`` prints); ``report``: with
    ``--report``, its file and verdict (or error)."""
    try:
        size = os.path.getsize(stats.path)
    except OSError:
        size = 0
    streams = {}
    routes = (("video", stats.video, stats.video_route), ("audio", stats.audio, stats.audio_route))
    for kind, stream, route in routes:
        if stream.frames:
            streams[kind] = {
                "codec": route.output if route else stream.codec,
                **_route_fields(route),
                "frames": stream.frames,
                "duration": round(stream.duration, 3),
                "bytes": stream.bytes,
            }
    if "audio" in streams and stats.audio_fill_packets:
        # Copy mode: Opus silence packets written into holes, on top of the frames received.
        streams["audio"]["silence_filled"] = stats.audio_fill_packets
    return {
        "file": stats.path,
        "mode": stats.mode,
        "duration": round(stats.duration, 3),
        "streams": streams,
        "size": size,
        "dropped": stats.dropped,
        "stopped_by": outcome.reason,
        "wall_seconds": round(wall, 3),
        "error": stats.error,
        # A writer error (a full disk...): the file holds less than the counts say.
        "complete": stats.error is None,
        **({"report": qa.to_dict()} if qa is not None else {}),
    }


def _route_fields(route: StreamRoute | None) -> dict[str, Any]:
    """How a stream reached the file: copy / transcode (copy mode) / encode, from which codec."""
    if route is None:
        return {}
    return {"action": route.action, "source_codec": route.source, "encoder": route.encoder}


def _route_text(info: dict[str, Any]) -> str:
    action = info.get("action")
    if action == "transcode":
        return f"{info['source_codec']} -> {info['codec']} (transcode, {info['encoder']})"
    if action == "encode":
        return f"{info['codec']} (encode, {info['encoder']})"
    return f"{info['codec']} ({action})" if action else str(info["codec"])


def _print_summary(
    args: argparse.Namespace,
    target: Target,
    stats: RecorderStats,
    outcome: _Outcome,
    wall: float,
    qa: _QaOutcome | None = None,
) -> None:
    data = summary(stats, outcome, wall, qa)
    if args.json:
        print(redact(json.dumps(data, indent=2)), flush=True)
        return
    lines = [
        f"recorded {data['file']} from the {target.describe()} ({data['mode']} mode, "
        f"stopped by {data['stopped_by']})",
        f"  duration {format_duration(stats.duration)} ({stats.duration:.3f} s), "
        f"size {format_size(data['size'])}, dropped {data['dropped']}",
    ]
    for kind, info in data["streams"].items():
        filled = info.get("silence_filled")
        extra = f" (and {filled} of silence filled into holes)" if filled else ""
        lines.append(
            f"  {kind}: {_route_text(info)}, {info['frames']} frames{extra}, "
            f"{info['duration']:.3f} s"
        )
    if not data["streams"]:
        lines.append("  no streams: nothing was received")
    if stats.error:
        lines.append(
            f"  writer error: {stats.error}; the file is incomplete: it holds less than the "
            "counts above (frames handed to the writer)"
        )
    if qa is not None and qa.path is not None:
        lines.append(f"  QA report {qa.path}: {qa.verdict}")
    print(redact("\n".join(lines)), flush=True)
