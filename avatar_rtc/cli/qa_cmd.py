"""``avatar-rtc qa FILE``: media QA of a recorded file, as a JSON report (stdout).

Any MP4/MKV/WebM (H264 or VP8 + Opus; what FFmpeg reads): frame rates, freezes, pauses, black
runs, loudness, silences, speech, dropouts and lip sync, judged against thresholds (defaults
from the standards; ``--thresholds FILE.toml`` overrides them, see
:mod:`avatar_rtc.qa.thresholds`). ``--json OUT`` also writes the report to a file, ``--plot
OUT.png`` draws its timeline.

Exit status (the error's ``exit_code``, see :mod:`.exit_status`): 0 every threshold holds; 4
one is breached; 3 no media in the file; 2 bad options (missing file, bad thresholds); 1 any
other error (e.g. the ``qa`` extra is not installed); 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import AvatarRTCError, ConfigurationError, ThresholdError
from .arguments import add_command
from .exit_status import print_error

__all__ = ["register", "run"]

COMMAND = "qa"
EXTRA_HINT = "the qa extra is needed: pip install 'avatar-rtc[qa]'"


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        COMMAND,
        help="analyse a recorded file: freezes, black, loudness, dropouts, lip sync",
        description="""\
Analyse a recorded MP4/MKV/WebM file and print a JSON report: fps and harmonic fps,
freezes, pauses, black runs, integrated loudness and true peak, silences, speech, dropouts,
and the lip-sync offset (positive: sound first) with its ITU-R BT.1359 verdict.""",
    )
    parser.add_argument("file", metavar="FILE", help="the recording to analyse")
    parser.add_argument("--json", metavar="OUT", help="also write the report to OUT")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the timeline to OUT.png")
    parser.add_argument(
        "--thresholds", metavar="FILE.toml", help="limits overriding the defaults (TOML)"
    )
    parser.add_argument("--compact", action="store_true", help="one-line JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: NumPy/SciPy/OpenCV would slow every other command's start.
    try:
        from ..qa import analyse_file, load_thresholds
    except ImportError as exc:
        print_error(COMMAND, RuntimeError(f"{EXTRA_HINT} ({exc})"))
        return AvatarRTCError.exit_code
    try:
        thresholds = load_thresholds(args.thresholds) if args.thresholds else None
        report = analyse_file(args.file, thresholds)
    except FileNotFoundError as exc:  # FILE or --thresholds: a usage error
        print_error(COMMAND, exc)
        return ConfigurationError.exit_code
    except AvatarRTCError as exc:
        print_error(COMMAND, exc)
        return exc.exit_code
    text = json.dumps(report.to_dict(), indent=None if args.compact else 2)
    print(text, flush=True)  # a closed stdout (BrokenPipeError): main() exits quietly
    try:
        if args.json:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
        if args.plot:
            from ..qa.plot import plot_report

            plot_report(report, args.plot)
    except ImportError as exc:
        print_error(COMMAND, RuntimeError(f"{EXTRA_HINT} ({exc})"))
        return AvatarRTCError.exit_code
    except (OSError, ValueError) as exc:
        print_error(COMMAND, exc)
        return AvatarRTCError.exit_code
    return 0 if report.verdict == "pass" else ThresholdError.exit_code
