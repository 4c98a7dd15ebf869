"""``avatar-rtc qa``: media QA as a JSON report (stdout), of a recorded file or a live session.

- ``qa FILE``: any MP4/MKV/WebM (H264 or VP8 + Opus; what FFmpeg reads).
- ``qa [--say TEXT]... [--script FILE] [--duration S] [--record OUT]``: a scripted live
  session with the usual target options (default: the embedded emulator). After the first
  frame and a second of idle face (the mouth's rest level), each turn is said once the
  previous one has been spoken (so its latency is its own): the ``--say``/``--say-audio`` in
  order, then one per non-empty line of the script (``#`` starts a comment line). Receiving
  goes on until the last turn has been spoken plus a second, and for at least ``--duration``
  seconds from the first frame (default without turns: 5 s). The report adds ``start``,
  ``turns`` and ``network``; ``--record OUT`` keeps the session's file (never overwritten).

Both: frame rates, freezes, pauses, black runs, loudness, silences, speech, dropouts and lip
sync, judged against thresholds (defaults from the standards; ``--thresholds FILE.toml``
overrides them, see :mod:`avatar_rtc.qa.thresholds`). ``--json OUT`` also writes the report to
a file, ``--plot OUT.png`` draws its timeline.

Exit status (the error's ``exit_code``, see :mod:`.exit_status`): 0 every threshold holds; 4
one is breached; 3 no media (in the file, or no video frame from the session); 2 bad options
(missing file, bad thresholds, FILE with live options); 1 any other error (e.g. the ``qa``
extra is not installed); 5-7 the session could not be had; 130/143 interrupted (the report of
what arrived is printed); 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    AvatarRTCError,
    ConfigurationError,
    NoMediaError,
    ThresholdError,
)
from .arguments import (
    SESSION_STACK,
    Speech,
    add_command,
    add_speech_options,
    add_target_options,
    positive_float,
)
from .exit_status import print_error
from .output_file import check_report_files, write_report_files

if TYPE_CHECKING:
    from ..qa import LiveQa, QaReport, Thresholds
    from ..session import AvatarSession
    from .common import StopSignals, Target

__all__ = ["REPORT_SUFFIX", "register", "report_beside", "run"]

logger = logging.getLogger(__name__)

COMMAND = "qa"
EXTRA_HINT = "the qa extra is needed: pip install 'avatar-rtc[qa]'"
REPORT_SUFFIX = ".qa.json"  # `record OUT --report` writes OUT + this
LIVE_ONLY = ("speech", "script", "duration", "record")  # dests that exclude FILE
DEFAULT_DURATION = 5.0  # seconds of a live session without turns
LEAD_IN = 1.0  # seconds of idle face before the first turn: the mouth's rest level
TAIL = 1.0  # seconds received after the last turn was spoken
TURN_TIMEOUT = 120.0  # bound on waiting for one turn to be spoken

DESCRIPTION = """\
Media QA as a JSON report: fps and harmonic fps, freezes, pauses, black runs, integrated
loudness and true peak, silences, speech, dropouts, and the lip-sync offset (positive: sound
first) with its ITU-R BT.1359 verdict.

With FILE: analyse a recorded MP4/MKV/WebM file. Without: run a live session (default: the
embedded emulator) and add the start-up phases, each turn's latencies (say -> first speech,
say -> first mouth opening, P50/P95/P99) and the network (packets, loss, NACKs, PLIs, jitter,
bitrate each second, the ICE pair)."""

EPILOG = """\
Live: after the first frame and one second of idle face, each --say/--say-audio, then each
non-empty line of --script, is said once the previous turn has been spoken. Receiving goes on
until the last turn has been spoken plus one second, and for at least --duration seconds after
the first frame (default without turns: 5)."""


def check_qa_extra(what: str) -> None:
    """``ConfigurationError`` (a usage error, exit 2) unless the qa extra is installed: said
    before anything runs, by every command that needs it."""
    try:
        import avatar_rtc.qa  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(f"{what}: {EXTRA_HINT} ({exc.__cause__ or exc})") from None


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        COMMAND,
        help="media QA of a file or a live session: freezes, loudness, lip sync, latency",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "file", metavar="FILE", nargs="?", help="the recording to analyse (none: a live session)"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the report to OUT")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the timeline to OUT.png")
    parser.add_argument(
        "--thresholds", metavar="FILE.toml", help="limits overriding the defaults (TOML)"
    )
    parser.add_argument("--compact", action="store_true", help="one-line JSON")
    add_speech_options(parser, "as a turn of a live session")
    live = parser.add_argument_group("live session (without FILE)")
    live.add_argument(
        "--script", metavar="FILE", help="one turn per non-empty line (after the --say turns)"
    )
    live.add_argument(
        "--duration",
        type=positive_float,
        metavar="S",
        help=f"receive at least S seconds after the first frame (default without turns: "
        f"{DEFAULT_DURATION:g})",
    )
    live.add_argument("--record", metavar="OUT", help="also record the session to OUT")
    add_target_options(parser)
    imports = (*SESSION_STACK, "avatar_rtc.record", "avatar_rtc.qa")
    parser.set_defaults(handler=run, imports=imports)


def run(args: argparse.Namespace) -> int:
    # Imported here: NumPy/SciPy/OpenCV would slow every other command's start.
    try:
        check_qa_extra("qa")
    except ConfigurationError as exc:
        print_error(COMMAND, exc)
        return exc.exit_code
    from ..qa import load_thresholds

    try:
        thresholds = load_thresholds(args.thresholds) if args.thresholds else None
        check_report_files(args.json, args.plot)
        if args.file is not None:
            given = [name for name in LIVE_ONLY if getattr(args, name)]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                raise ConfigurationError(
                    f"FILE is analysed as it is: {', '.join(_flag(n) for n in given)} "
                    f"only {verb} to a live session (without FILE)"
                )
            return _file(args, thresholds)
        return _live(args, thresholds)
    except FileNotFoundError as exc:  # FILE, --script or --thresholds: a usage error
        print_error(COMMAND, exc)
        return ConfigurationError.exit_code
    except AvatarRTCError as exc:
        print_error(COMMAND, exc)
        return exc.exit_code


def _flag(dest: str) -> str:
    return "--say/--say-audio" if dest == "speech" else "--" + dest


def _file(args: argparse.Namespace, thresholds: Thresholds | None) -> int:
    from ..qa import analyse_file

    return emit(args, analyse_file(args.file, thresholds))


def emit(args: argparse.Namespace, report: QaReport, *, interrupted: int | None = None) -> int:
    """Print the report (and write ``--json``/``--plot``); the exit status of its verdict."""
    text = json.dumps(report.to_dict(), indent=None if args.compact else 2)
    print(text, flush=True)  # a closed stdout (BrokenPipeError): main() exits quietly

    def plot(path: Path) -> None:
        from ..qa.plot import plot_report

        plot_report(report, path)

    try:
        write_report_files(args.json, text, args.plot, plot)
    except ImportError as exc:
        print_error(COMMAND, RuntimeError(f"{EXTRA_HINT} ({exc})"))
        return AvatarRTCError.exit_code
    except (OSError, ValueError) as exc:
        print_error(COMMAND, exc)
        return AvatarRTCError.exit_code
    if interrupted is not None:
        return interrupted
    return 0 if report.verdict == "pass" else ThresholdError.exit_code


def report_beside(path: str | Path) -> Path:
    """Where ``record OUT --report`` writes the report of OUT: ``OUT.qa.json``."""
    return Path(f"{path}{REPORT_SUFFIX}")


# --- live -------------------------------------------------------------------------------------


def read_script(path: str) -> list[Speech]:
    """One text turn per non-empty line; lines starting with ``#`` are comments."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the script {path!r}: {exc}") from None
    return [Speech("text", s) for s in (line.strip() for line in lines) if s and s[0] != "#"]


def _live(args: argparse.Namespace, thresholds: Thresholds | None) -> int:
    from ..record.options import container_for_path
    from .common import run_command, target_from_args
    from .output_file import check_output_file
    from .speech import check_speech

    target = target_from_args(args)
    turns = [*args.speech, *(read_script(args.script) if args.script else [])]
    check_speech(turns, target)
    if args.record:
        container_for_path(args.record)
        check_output_file(args.record, force=None)  # (qa has no --force)
    return run_command(COMMAND, lambda stop: _session(args, target, turns, thresholds, stop))


async def _session(
    args: argparse.Namespace,
    target: Target,
    turns: list[Speech],
    thresholds: Thresholds | None,
    stop: StopSignals,
) -> int:
    from ..qa import LiveQa
    from ..session import AvatarSession
    from .common import open_target

    async with open_target(target) as options:
        session = AvatarSession(options)
        qa = LiveQa(session, thresholds)
        qa.start()  # before connecting: everything from the first frame on is analysed
        try:
            async with session:
                stop.interruptible = False  # from now on a signal ends the session early
                # A loss for good ends it too (the report, then its error and exit status).
                session.on("disconnected", lambda event: stop.event.set())
                if args.record:
                    session.record(args.record)  # finalised when the session closes
                await _drive(args, target, session, qa, turns, stop)
                await qa.stop()  # the last network sample while connected
        except AvatarRTCError as exc:
            if exc is not session.error:  # (the loss for good: reported below, by its type)
                raise
        finally:
            await qa.stop()
        report = await qa.report()
    if report.video is None and report.audio is None:
        raise NoMediaError("no media arrived")
    status = emit(args, report, interrupted=stop.exit_code)
    if session.error is not None:  # lost for good (its type: the exit status)
        print_error(COMMAND, session.error)
        return session.error.exit_code
    return status


async def _drive(
    args: argparse.Namespace,
    target: Target,
    session: AvatarSession,
    qa: LiveQa,
    turns: list[Speech],
    stop: StopSignals,
) -> None:
    """First frame, the turns one after the other, then receive until the end."""
    from .common import first_frame_or_stop, race_stop

    stopped = await first_frame_or_stop(stop, session, target.connect_timeout)
    first = time.monotonic()
    if stopped or (turns and await stop.wait(LEAD_IN)):
        return
    for turn in turns:
        stopped, _ = await race_stop(stop, _spoken(session, qa, turn))
        if stopped:
            return
    duration = args.duration
    if duration is None:
        duration = 0.0 if turns else DEFAULT_DURATION
    left = max(duration - (time.monotonic() - first), TAIL if turns else 0.0)
    await stop.wait(left)


async def _spoken(session: AvatarSession, qa: LiveQa, turn: Speech) -> None:
    """Say ``turn`` (timed by ``qa``), then wait until the avatar has spoken it."""
    if turn.kind == "text":
        await qa.say(turn.value)
    else:
        await qa.say_audio(turn.value)
    try:
        await session.wait_idle(TURN_TIMEOUT)
    except TimeoutError:
        logger.warning("the avatar was still speaking after %.0f s: next turn", TURN_TIMEOUT)
