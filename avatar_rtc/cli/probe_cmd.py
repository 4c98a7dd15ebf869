"""``avatar-rtc probe``: connect, receive for a while, print a JSON report of what arrived.

The report (stdout; see :mod:`.probe_report`) is the session's ``stats().to_dict()`` plus what
this run measured: decoded frames and fps, resolution, audio level, and the error and the
start-up phases reached when it failed. It is printed whenever a session was created, failed
or not: a QA run needs it most when connecting fails. Receiving lasts ``--duration`` seconds
counted from the first decoded frame, so a slow connect does not shorten the measurement.

Exit status: the error's ``exit_code`` (``avatar-rtc --help``), e.g. 3 when no video frame
arrived or none in the window's last ``VIDEO_STOPPED_AFTER`` seconds; 130/143 interrupted by
SIGINT/SIGTERM (the report so far is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ..errors import AvatarRTCError, ConfigurationError, NoMediaError
from ..redact import redact
from .arguments import (
    SESSION_STACK,
    add_command,
    add_speech_options,
    add_target_options,
    positive_float,
)
from .exit_status import exit_code_of, print_error

if TYPE_CHECKING:
    from ..session import AvatarSession
    from ..session_stats import SessionStats
    from .common import StopSignals, Target
    from .probe_report import AudioLevel, VideoCount

__all__ = ["register", "run"]

COMMAND = "probe"
VIDEO_STOPPED_AFTER = 2.0  # seconds without a frame before the window ends: video stopped

DESCRIPTION = """\
Connect to the avatar (default: the embedded emulator), receive for --duration seconds and
print a JSON report: the session's stats (schema_version, state, codecs and packet counters
of each track, time to first frame by phase, selected ICE candidate pair) and a "probe"
section: decoded frames and fps, resolution, audio level, and on failure the error and the
start-up phases reached. The report is printed when connecting fails, too."""

EPILOG = """\
probe.audio.level_db: RMS level in dBFS of all the audio received during the probe (the
energy mean over every sample; -120 is silence); probe.audio.peak_db: its loudest 20 ms."""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        COMMAND,
        help="connect, receive for a few seconds and print a JSON report",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds to receive after the first frame (default %(default)s)",
    )
    add_speech_options(parser, "once the first frame arrived")
    parser.add_argument("--compact", action="store_true", help="one-line JSON")
    add_target_options(parser)
    parser.set_defaults(handler=run, imports=SESSION_STACK)


def run(args: argparse.Namespace) -> int:
    # Imported here: the session options load the network stack (slow for --help).
    from .common import run_command, target_from_args
    from .speech import check_speech

    try:
        target = target_from_args(args)
        check_speech(args.speech, target)
    except ConfigurationError as exc:
        print_error(COMMAND, exc)
        return exc.exit_code
    return run_command(COMMAND, lambda stop: _probe(args, target, stop))


async def _probe(args: argparse.Namespace, target: Target, stop: StopSignals) -> int:
    from ..session import AvatarSession
    from .common import open_target
    from .probe_report import AudioLevel, VideoCount, build_report

    video, audio = VideoCount(), AudioLevel()
    window = 0.0
    ended: float | None = None  # time.monotonic() at the end of the window
    error: BaseException | None = None
    stats: SessionStats | None = None
    async with open_target(target) as options:
        session = AvatarSession(options)
        try:
            async with session:
                stop.interruptible = False  # from now on a signal ends the measurement early
                try:
                    window = await _measure(args, target, session, stop, video, audio)
                    ended = time.monotonic()
                finally:
                    stats = session.stats()  # while connected (closing drops the ICE pair)
        except BrokenPipeError:
            raise
        except (AvatarRTCError, OSError) as exc:  # connecting failed too: still a report
            error = exc
        silent = ended - video.last if ended is not None and video.last is not None else 0.0
        if error is None and video.frames == 0:
            error = NoMediaError("no video frame arrived")
        elif error is None and silent >= VIDEO_STOPPED_AFTER:
            error = NoMediaError(f"video stopped arriving {silent:.1f} s before the end")
        report = build_report(stats or session.stats(), target.kind, video, audio, window, error)
    print(redact(json.dumps(report, indent=None if args.compact else 2)), flush=True)
    if error is not None:
        print_error(COMMAND, error)
        return stop.exit_code or exit_code_of(error)
    if not report["audio"]["frames"]:
        print(f"avatar-rtc {COMMAND}: warning: no audio arrived", file=sys.stderr)
    return stop.exit_code or 0


async def _measure(
    args: argparse.Namespace,
    target: Target,
    session: AvatarSession,
    stop: StopSignals,
    video: VideoCount,
    audio: AudioLevel,
) -> float:
    """Count until ``--duration`` after the first frame, a signal, or the media's loss for good
    (the error then leaves ``async with session``); the window's length."""
    from ..media.formats import VideoFormat
    from .common import first_frame_or_stop
    from .speech import speak

    # pixel_format=None: count decoded frames without converting them to numpy.
    session.video(VideoFormat(pixel_format=None), capacity=8).on_frame(video.add)
    session.audio().on_frame(audio.add)
    # A loss for good ends the window as a signal does (as in qa; the exit status stays the
    # error's: StopSignals.exit_code comes from a signal received, not from the event).
    forget = session.on("disconnected", lambda event: stop.event.set())
    try:
        stopped = await first_frame_or_stop(stop, session, target.connect_timeout)
        started = time.monotonic()
        if not stopped:
            await speak(session, args.speech)
            await stop.wait(max(0.0, args.duration - (time.monotonic() - started)))
        return time.monotonic() - started
    finally:
        forget()
