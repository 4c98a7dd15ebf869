"""``avatar-rtc probe``: connect, receive for a while, print a JSON report of what arrived.

The report (stdout): negotiated codecs, resolution, decoded video frames and fps, audio
frames, time to first frame split into phases, the selected ICE candidate pair and the
receive pipeline's packet counters. Receiving lasts ``--duration`` seconds counted from the
first decoded frame, so a slow connect does not shorten the measurement.

Exit status: 0 media arrived; 3 no video frame arrived (the report is still printed);
1 an error of the service/WHEP/connection (one line on stderr); 2 bad options;
130/143 interrupted by SIGINT/SIGTERM (the report so far is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..redact import redact
from .common import (
    EXIT_NO_MEDIA,
    EXIT_USAGE,
    StopSignals,
    Target,
    add_target_options,
    open_target,
    positive_float,
    print_error,
    race_stop,
    run_command,
    target_from_args,
)

if TYPE_CHECKING:
    from ..media.frames import VideoFrame
    from ..session import AvatarSession

__all__ = ["build_report", "register", "run"]

COMMAND = "probe"
PHASES = ("session", "offer_answer", "ice_dtls", "first_keyframe", "first_frame")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        COMMAND,
        help="connect, receive for a few seconds and print a JSON report",
        description="Connect to the avatar (default: the embedded emulator), receive for "
        "--duration seconds and print a JSON report: codecs, resolution, frames and fps, "
        "time to first frame by phase, selected ICE candidate pair, packet counters.",
        epilog="Exit status: 0 media arrived, 3 no video frame (report still printed), "
        "1 error, 2 bad options, 130/143 interrupted.",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds to receive after the first frame (default %(default)s)",
    )
    parser.add_argument(
        "--say",
        action="append",
        default=[],
        metavar="TEXT",
        help="make the avatar speak once the first frame arrived (repeatable)",
    )
    parser.add_argument("--compact", action="store_true", help="one-line JSON")
    add_target_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        target = target_from_args(args)
        if args.say and target.kind == "whep":
            raise ConfigurationError("--say needs the Control API (not available with --whep-url)")
    except ConfigurationError as exc:
        print_error(COMMAND, exc)
        return EXIT_USAGE
    return run_command(COMMAND, lambda stop: _probe(args, target, stop))


@dataclass
class VideoCount:
    """Decoded video frames seen during the measurement window."""

    frames: int = 0
    width: int | None = None
    height: int | None = None
    first: float | None = None  # time.monotonic() of the first / last frame's arrival
    last: float | None = None
    sizes: set[tuple[int, int]] = field(default_factory=set)

    def add(self, frame: VideoFrame) -> None:
        self.frames += 1
        self.width, self.height = frame.width, frame.height
        self.sizes.add((frame.width, frame.height))
        if self.first is None:
            self.first = frame.arrival_time
        self.last = frame.arrival_time

    @property
    def fps(self) -> float | None:
        if self.frames < 2 or self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.frames - 1) / (self.last - self.first)


async def _probe(args: argparse.Namespace, target: Target, stop: StopSignals) -> int:
    from ..session import AvatarSession

    async with open_target(target) as session_kwargs:
        session = AvatarSession(**session_kwargs)
        async with session:
            stop.interruptible = False  # from now on a signal ends the measurement early
            count = VideoCount()
            # format=None: count decoded frames without converting them to numpy.
            stream = session.video(format=None, capacity=8)
            stream.on_frame(count.add)
            note = None
            try:
                stopped, _ = await race_stop(stop, session.wait_first_frame(target.connect_timeout))
            except TimeoutError:
                stopped = False
                note = f"no video frame within {target.connect_timeout:g} s of connecting"
            started = time.monotonic()
            if not stopped and note is None:
                for text in args.say:
                    await session.say(text)
                await stop.wait(max(0.0, args.duration - (time.monotonic() - started)))
            elapsed = time.monotonic() - started
            report = build_report(session, target, count, elapsed if note is None else 0.0)
    print(redact(json.dumps(report, indent=None if args.compact else 2)), flush=True)
    if note is not None or count.frames == 0:
        print(f"avatar-rtc {COMMAND}: {note or 'no video frame arrived'}", file=sys.stderr)
        return stop.exit_code or EXIT_NO_MEDIA
    if not report["audio"]["frames"]:
        print(f"avatar-rtc {COMMAND}: warning: no audio arrived", file=sys.stderr)
    return stop.exit_code or 0


def build_report(
    session: AvatarSession, target: Target, count: VideoCount, window: float
) -> dict[str, Any]:
    """The JSON report of a probe (plain data; no credentials in it)."""
    stats = session.stats()
    timings = stats.timings
    pair = stats.selected_pair
    video_decoded = stats.video_decoder.decoded if stats.video_decoder else None
    audio_decoded = stats.audio_decoder.decoded if stats.audio_decoder else None
    fps = count.fps
    return {
        "target": target.kind,
        "session_id": stats.session_id,
        "state": stats.state.value,
        "window_seconds": round(window, 3),
        "codecs": {"video": stats.video.codec, "audio": stats.audio.codec},
        "video": {
            "codec": stats.video.codec,
            "width": count.width,
            "height": count.height,
            "resolutions": sorted(f"{w}x{h}" for w, h in count.sizes),
            "frames": count.frames,
            "fps": None if fps is None else round(fps, 2),
            "frames_received": stats.video.frames,
            "frames_decoded_total": video_decoded,
            "keyframes": stats.video.keyframes,
        },
        "audio": {
            "codec": stats.audio.codec,
            "frames": stats.audio.frames,
            "frames_decoded_total": audio_decoded,
            "utterances": stats.utterances,
            "level_db": round(stats.audio_level_db, 1),
        },
        "time_to_first_frame": {
            "total": _round(timings.total),
            "phases": {name: _round(getattr(timings, name)) for name in PHASES},
        },
        "selected_pair": _pair(pair),
        "packets": {"video": _plain(stats.video), "audio": _plain(stats.audio)},
        "errors": list(stats.errors),
    }


def _pair(pair: Any) -> dict[str, Any] | None:
    if pair is None:
        return None
    return {
        "local_type": pair.local_type,
        "local_address": f"{pair.local_address[0]}:{pair.local_address[1]}",
        "remote_type": pair.remote_type,
        "remote_address": f"{pair.remote_address[0]}:{pair.remote_address[1]}",
        "protocol": pair.protocol,
        "turn_transport": pair.relay_transport,
        "turn_url": pair.relay_url,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _plain(value: Any) -> Any:
    """Dataclasses/enums -> JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value
