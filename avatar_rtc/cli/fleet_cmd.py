"""``avatar-rtc fleet``: N sessions at once, recorded (and QA'd), with an aggregated report.

Flow: check the options and the output folder -> start the target (default: one embedded
emulator serving every session) -> start the engine (local worker processes, or Ray) -> submit
N jobs (admitted by measured cost) -> progress on stderr -> gather the results -> the
aggregated report (P50/P95/P99 of time to first frame, say -> speech, lip-sync offset and
freezes per minute) on stdout, ``--json OUT`` and ``--plot OUT.png``.

Exit status: 0 every session ran (and passed QA); the first failed session's status (e.g. 3
no media, 7 connection); 4 a QA threshold breached; 2 bad options; 130/143 after a signal
(queued sessions are not run, counted apart from the failed ones; running ones end at once
and finalise their files, on Ray too; a second signal aborts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import AvatarRTCError, ConfigurationError, ThresholdError
from ..redact import redact
from .arguments import (
    SESSION_STACK,
    add_command,
    add_speech_options,
    add_target_options,
    positive_float,
    positive_int,
)
from .exit_status import print_error
from .output_file import check_output_file, check_report_files, write_report_files
from .progress import format_duration
from .qa_cmd import check_qa_extra

if TYPE_CHECKING:
    from ..fleet import Engine, FleetJob, FleetReport, JobResult
    from ..options import SessionOptions
    from .common import StopSignals, Target

__all__ = ["register", "run"]

COMMAND = "fleet"
JOBS = {"record": "copy-record", "qa": "qa"}  # --job -> FleetJob.kind
CONTAINER = "mp4"
LOW_FPS_SHARE = 0.95  # a session under this share of the embedded emulator's rate: say why

DESCRIPTION = """\
Run N avatar sessions at once (default target: one embedded emulator serving them all), each
recording its media to OUT_DIR/session-NNN.mp4; with --job qa each file is also analysed
(session-NNN.qa.json, as 'avatar-rtc qa' writes). Sessions run in worker processes, one per
core (--engine local), or as Ray tasks (--engine ray, local Ray or --address of a cluster),
admitted while their measured CPU cost stays under --limit of the cores."""

EPILOG = """\
Each session says --say/--say-audio once its first frame arrived (default: one sentence, for
the say -> speech and lip-sync figures) and records --duration seconds.

The report (stdout, --json, --plot): P50/P95/P99 across sessions of the time to first frame,
say -> speech, the lip-sync offset and freezes per minute (the last two with --job qa), and
every session's result. Progress (stderr): sessions done, running and queued, and the load.

Ctrl-C (SIGINT) or SIGTERM: queued sessions are not run (the report's not_run), running ones
end at once and finalise their files (also on Ray), then the report; a second signal aborts.

Ray: pip install 'avatar-rtc[ray]'. With --address, sessions connect from the cluster's nodes:
give a target they can reach (--api-url/--ks or --whep-url), not the embedded emulator."""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        COMMAND,
        help="run many sessions at once (local processes or Ray), aggregated report",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "--sessions", type=positive_int, required=True, metavar="N", help="sessions to run"
    )
    parser.add_argument(
        "--job",
        choices=tuple(JOBS),
        default="record",
        help="record each session (copy, no decode), or record and QA it (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=6.0,
        metavar="S",
        help="seconds each session records after its first frame (default %(default)s)",
    )
    add_speech_options(parser, "in every session once its first frame arrived")
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="worker processes on this machine, or Ray tasks (default %(default)s)",
    )
    engine.add_argument("--address", metavar="ADDR", help="Ray cluster to use (default: local)")
    engine.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="local worker processes (default: one per core)",
    )
    engine.add_argument(
        "--limit",
        type=_fraction,
        default=0.8,
        metavar="F",
        help="admit sessions while their measured CPU cost stays under F of each core "
        "(default %(default)s)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        default="fleet-out",
        metavar="DIR",
        help="folder of the files (default %(default)s)",
    )
    output.add_argument("--force", action="store_true", help="overwrite files in DIR")
    output.add_argument("--json", metavar="OUT", help="write the aggregated report to OUT")
    output.add_argument("--plot", metavar="OUT.png", help="draw the distributions to OUT.png")
    output.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    add_target_options(parser)
    parser.set_defaults(handler=run, imports=(*SESSION_STACK, "avatar_rtc.fleet"))


def _fraction(value: str) -> float:
    number = positive_float(value)
    if number > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction within (0, 1], got {value!r}")
    return number


def run(args: argparse.Namespace) -> int:
    # Imported here: the session options load the network stack (slow for --help).
    from .common import run_command, target_from_args
    from .speech import check_speech

    try:
        target = target_from_args(args)
        check_speech(args.speech, target)
        _check_engine(args)
        check_report_files(args.json, args.plot)
        for index in range(args.sessions):
            for suffix in (f".{CONTAINER}", ".qa.json"):
                path = Path(args.out) / f"session-{index:03d}{suffix}"
                check_output_file(str(path), force=args.force)
    except ConfigurationError as exc:
        print_error(COMMAND, exc)
        return exc.exit_code
    return run_command(COMMAND, lambda stop: _fleet(args, target, stop))


def _check_engine(args: argparse.Namespace) -> None:
    if args.job == "qa" or args.plot:
        check_qa_extra("--job qa" if args.job == "qa" else "--plot")
    if args.engine != "ray" and args.address:
        raise ConfigurationError("--address is for --engine ray")
    if args.engine == "ray":
        from ..fleet.ray_engine import EXTRA_HINT, ray_available

        if args.workers:
            raise ConfigurationError("--workers is for --engine local (Ray sizes itself)")
        if not ray_available():
            raise ConfigurationError(f"--engine ray needs Ray: {EXTRA_HINT}")


def _jobs(args: argparse.Namespace, target: Target, options: SessionOptions) -> list[FleetJob]:
    from ..fleet import DEFAULT_SAY, RECORD_READ_INTERVAL, FleetJob, Utterance

    speech = tuple(Utterance(item.kind, item.value) for item in args.speech)
    if not speech and target.kind != "whep":
        speech = (Utterance("text", DEFAULT_SAY),)
    if args.read_interval is None and args.job == "record":
        options = replace(options, read_interval=RECORD_READ_INTERVAL)
    return [
        FleetJob(
            index,
            JOBS[args.job],  # type: ignore[arg-type]  # the values are JobKinds
            options,
            duration=args.duration,
            speech=speech,
            out_dir=args.out,
            container=CONTAINER,
        )
        for index in range(args.sessions)
    ]


def _engine(args: argparse.Namespace, jobs: list[FleetJob]) -> Engine:
    """The engine for ``jobs``, admitting them at their costs (paced recordings: less)."""
    from ..fleet import costs_for

    costs = costs_for(jobs)
    if args.engine == "ray":
        from ..fleet.ray_engine import RayEngine

        if logging.getLogger("avatar_rtc").getEffectiveLevel() > logging.INFO:
            logging.getLogger("ray").setLevel(logging.ERROR)  # its start-up notices
        return RayEngine(args.address, limit=args.limit, costs=costs)
    from ..fleet.pool import SessionPool

    return SessionPool(args.workers, limit=args.limit, costs=costs)


async def _fleet(args: argparse.Namespace, target: Target, stop: StopSignals) -> int:
    from ..fleet import aggregate
    from .common import open_target

    started = time.monotonic()
    progress = None if args.no_progress else FleetProgress(sys.stderr)
    async with open_target(target) as options:
        jobs = _jobs(args, target, options)
        engine = _engine(args, jobs)
        await engine.start()  # a signal now cancels (nothing running yet)
        try:
            futures = [engine.submit(job) for job in jobs]
            stop.interruptible = False  # from now on a signal means "finish the files"
            await _wait(engine, futures, stop, progress, started)
        except BaseException:
            engine.stop()
            raise
        finally:
            await engine.close()
        results = [future.result() for future in futures]
    report = aggregate(results, wall_seconds=time.monotonic() - started, engine=args.engine)
    _print_summary(report, args, _emulator_fps(target))  # first: the work is done
    written = _write_outputs(args, report)
    return stop.exit_code or exit_status(results) or written


async def _wait(
    engine: Engine,
    futures: list[asyncio.Future[JobResult]],
    stop: StopSignals,
    progress: FleetProgress | None,
    started: float,
) -> None:
    """Until every job has a result; a stop signal stops the engine (once)."""
    stopping = False
    signalled = asyncio.ensure_future(stop.event.wait())
    try:
        while True:
            done = sum(f.done() for f in futures)
            ended = [f.result() for f in futures if f.done()]
            failed = sum(not r.ok and not r.not_run for r in ended)
            if progress is not None:
                progress.update(done, failed, len(futures), engine, time.monotonic() - started)
            if done == len(futures):
                break
            if stop.event.is_set() and not stopping:
                stopping = True
                engine.stop()
            waits = [f for f in futures if not f.done()] + ([] if stopping else [signalled])
            await asyncio.wait(waits, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        if progress is not None:
            progress.finish()


def exit_status(results: list[JobResult]) -> int:
    """0; else the first failed session's status; else 4 when a QA verdict is "fail"."""
    for result in results:
        if not result.ok and not result.not_run:
            return result.exit_code or AvatarRTCError.exit_code
    if any(result.verdict == "fail" for result in results):
        return ThresholdError.exit_code
    return 0


def _write_outputs(args: argparse.Namespace, report: FleetReport) -> int:
    """``--json`` and ``--plot``; 0, or the exit status of a failure to write them."""

    def plot(path: Path) -> None:
        from ..fleet import plot_fleet

        plot_fleet(report, path)

    text = redact(json.dumps(report.to_dict(), indent=2))
    try:
        write_report_files(args.json, text, args.plot, plot)
    except ImportError as exc:  # matplotlib: the qa extra
        print_error(COMMAND, RuntimeError(f"--plot needs the qa extra ({exc})"))
    except (OSError, ValueError) as exc:  # (checked before the sessions ran: rare)
        print_error(COMMAND, exc)
        return AvatarRTCError.exit_code
    return 0


def _emulator_fps(target: Target) -> int | None:
    """The frame rate the embedded emulator sends (None: another target)."""
    from .common import embedded_emulator_media

    return embedded_emulator_media(target).fps if target.kind == "emulator" else None


def _print_summary(
    report: FleetReport, args: argparse.Namespace, emulator_fps: int | None = None
) -> None:
    """The counts, each metric's percentiles, the lowest video rates; ``emulator_fps``: the
    embedded emulator's rate, to say when sessions got less (it is then the bottleneck)."""
    from ..fleet.aggregate import METRICS

    lines = [
        f"fleet: {report.ok}/{report.sessions} sessions ok ({args.engine} engine"
        + (f", {report.wall_seconds:.1f} s" if report.wall_seconds is not None else "")
        + (f"), files in {args.out}" if any(r.file for r in report.results) else ")")
        + (f", QA {report.qa_pass} pass / {report.qa_fail} fail" if args.job == "qa" else ""),
    ]
    if report.interrupted:
        lines.append(
            f"  {report.interrupted} of {report.sessions} sessions stopped early by the signal"
            " (their figures cover what ran)"
        )
    if report.not_run:
        lines.append(
            f"  {report.not_run} of {report.sessions} sessions not run (the signal came first)"
        )
    for name, (label, unit) in METRICS.items():
        m = report.metrics[name]
        if m.n:
            lines.append(
                f"  {label:20s} p50 {m.p50:8.3f}  p95 {m.p95:8.3f}  p99 {m.p99:8.3f} {unit}"
                f"  ({m.n} sessions)"
            )
        else:
            lines.append(f"  {label:20s} not measured")
    fps, worst = report.video.get("fps"), report.video.get("worst_second_fps")
    if fps is not None and fps.n and fps.min is not None and fps.p50 is not None:
        worst_min = f", worst second {worst.min:.0f} fps" if worst and worst.min is not None else ""
        lines.append(
            f"  {'video fps':20s} p50 {fps.p50:8.1f}  min {fps.min:8.1f}{worst_min}"
            f"  ({fps.n} sessions)"
        )
        if emulator_fps is not None and fps.min < LOW_FPS_SHARE * emulator_fps:
            lines.append(
                f"  note: some sessions got under the {emulator_fps} fps the embedded emulator"
                " sends: it renders and encodes every session's video in this process, and"
                " that is the limit here. Fewer --sessions, or a target of its own"
                " (avatar-rtc emulator elsewhere, or the service)."
            )
    for result in report.results:
        if not result.ok:
            lines.append(f"  session-{result.index:03d}: {result.error}")
    print(redact("\n".join(lines)), flush=True)


class FleetProgress:
    """``fleet [#######-------------] 3/8 done, 0 failed, 4 running, 1 queued, load 72%
    00:12.3`` on stderr: one line rewritten in place on a terminal, otherwise a line when the
    count changes (or every ``interval`` seconds)."""

    WIDTH = 20  # characters of the bar

    def __init__(self, stream: TextIO, *, interval: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self._last: tuple[int, int] | None = None
        self._last_at = 0.0
        self._width = 0

    def update(self, done: int, failed: int, total: int, engine: Engine, elapsed: float) -> None:
        load = engine.load()
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = (
            f"fleet [{bar}] {done}/{total} done, {failed} failed, {load.running} running, "
            f"{load.queued} queued, load {load.fraction:.0%}  {format_duration(elapsed)}"
        )
        if self.tty:
            self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
            self._width = len(line)
        elif (done, failed) != self._last or elapsed - self._last_at >= self.interval:
            self.stream.write(line + "\n")
            self._last, self._last_at = (done, failed), elapsed
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
