"""Building blocks of the parsers: option types, a subcommand's parser (``-v``, exit statuses),
the target/ICE options of ``probe``, ``record`` and ``qa``, and ``--say``/``--say-audio``.

Light on purpose: ``--help`` and ``--version`` build every parser and must not load the media
stack (aiohttp, aiortc and PyAV take about a second to import).
"""

from __future__ import annotations

import argparse
import math
import os
import textwrap
from dataclasses import dataclass
from typing import Any, Literal

from ..rtc.read_pacer import MAX_READ_INTERVAL
from ..rtc.video_codecs import RECEIVABLE_VIDEO_CODECS
from .exit_status import exit_status_help

__all__ = [
    "HelpFormatter",
    "Speech",
    "add_command",
    "add_speech_options",
    "add_target_options",
    "parse_size",
    "port_number",
    "positive_float",
    "positive_int",
    "verbosity",
]

VERBOSE_HELP = "more logging (-v info, -vv debug)"


class HelpFormatter(argparse.HelpFormatter):
    """Fills each paragraph of a description or epilog to the terminal's width, but keeps a
    paragraph with indented lines (a table, e.g. the exit statuses) as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip().split("\n\n"):
            if paragraph.startswith(" ") or "\n " in paragraph:
                paragraphs.append("\n".join(indent + line for line in paragraph.splitlines()))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(paragraph.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(paragraphs)


# The modules a command that connects runs on: main() imports a command's ``imports`` before
# its handler, with Ctrl-C held until they are in.
SESSION_STACK = ("avatar_rtc.session", "avatar_rtc.emulator")


def add_command(
    subparsers: Any, name: str, *, help: str, description: str, epilog: str = ""
) -> argparse.ArgumentParser:
    """A subcommand's parser: ``-v`` also after the command, exit statuses in its epilog.

    ``description`` and ``epilog``: paragraphs separated by blank lines (see
    :class:`HelpFormatter`).
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"{epilog.rstrip()}\n\n{exit_status_help()}" if epilog else exit_status_help(),
        formatter_class=HelpFormatter,
    )
    # Its own dest: a subparser's default would overwrite the count of a `-v` before the
    # command (argparse copies the subcommand's namespace over the main one).
    parser.add_argument(
        "-v",
        "--verbose",
        dest="sub_verbose",
        action="count",
        default=argparse.SUPPRESS,
        help=VERBOSE_HELP,
    )
    return parser


def verbosity(args: argparse.Namespace) -> int:
    """The number of ``-v`` given, before and after the subcommand."""
    return int(getattr(args, "verbose", 0)) + int(getattr(args, "sub_verbose", 0))


# --- option types -----------------------------------------------------------------------------


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    # Finite too: "inf" seconds ran until killed, and broke the progress line; where no
    # limit makes sense an option says so in words ("never").
    if not (number > 0 and math.isfinite(number)):  # (NaN too)
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value!r}")
    return number


def port_number(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port within 0-65535, got {value!r}")
    return port


def _seconds_or_never(value: str) -> float | None:
    return None if value == "never" else positive_float(value)


def _read_interval(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0 <= number <= MAX_READ_INTERVAL:  # (NaN too)
        raise argparse.ArgumentTypeError(f"expected 0 to {MAX_READ_INTERVAL:g} s, got {value!r}")
    return number


def parse_size(value: str) -> tuple[int, int]:
    """``WxH`` -> ``(width, height)`` (an argparse ``type``)."""
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {value!r}") from None
    return width, height


def _codec(value: str) -> str:
    codec = value.upper()
    if codec not in RECEIVABLE_VIDEO_CODECS:
        raise argparse.ArgumentTypeError(f"expected H264 or VP8, got {value!r}")
    return codec


# --- what the avatar says ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Speech:
    """One ``--say TEXT`` (``kind`` "text") or ``--say-audio FILE`` (``kind`` "audio")."""

    kind: Literal["text", "audio"]
    value: str


def _say_text(value: str) -> Speech:
    if not value.strip():  # the service refuses it (HTTP 400), after we connected
        raise argparse.ArgumentTypeError("expected some text to say")
    return Speech("text", value)


def _say_audio(value: str) -> Speech:
    # Checked here, so a typo is a usage error before connecting, not after.
    if not os.path.isfile(value):
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    if not os.access(value, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {value!r}")
    return Speech("audio", value)


def add_speech_options(parser: argparse.ArgumentParser, when: str) -> None:
    """``--say TEXT`` and ``--say-audio FILE``, both repeatable, into ``args.speech`` in the
    order given; ``when`` completes "make the avatar speak ...". Needs the Control API."""
    parser.add_argument(
        "--say",
        dest="speech",
        action="append",
        type=_say_text,
        default=[],
        metavar="TEXT",
        help=f"make the avatar speak TEXT {when} (repeatable; in order with --say-audio)",
    )
    parser.add_argument(
        "--say-audio",
        dest="speech",
        action="append",
        type=_say_audio,
        metavar="FILE",
        help=f"make the avatar speak an audio file (wav, mp3, ogg...: sent as MP3) {when} "
        "(repeatable)",
    )


# --- target -----------------------------------------------------------------------------------


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """Target selection, avatar choice and ICE options (shared by probe, record and live qa)."""
    target = parser.add_argument_group(
        "target",
        "Default: the embedded emulator (started in-process on a loopback port). With a KS "
        "(--ks or env AVATAR_KS) or an API URL: the avatar service. With --whep-url: any "
        "WHEP source. Prefer env variables for secrets: arguments are visible in `ps`.",
    )
    target.add_argument(
        "--api-url", metavar="URL", help="Control API base URL (env AVATAR_API_URL)"
    )
    target.add_argument(
        "--ks",
        metavar="KS",
        help="Kaltura session; never printed. Prefer env AVATAR_KS: other local users can read "
        "a command line (--ks=KS if it begins with '-')",
    )
    target.add_argument("--whep-url", metavar="URL", help="receive from this WHEP endpoint")
    target.add_argument(
        "--bearer", metavar="TOKEN", help="Bearer token for --whep-url (or env AVATAR_BEARER)"
    )
    target.add_argument(
        "--avatar-id",
        metavar="ID",
        help="visual id (default: env AVATAR_ID, else the catalog's first visual)",
    )
    target.add_argument(
        "--voice-id",
        metavar="ID",
        help="voice id (default: env AVATAR_VOICE_ID, else the avatar's)",
    )
    target.add_argument(
        "--codec",
        dest="codecs",
        action="append",
        type=_codec,
        metavar="H264|VP8",
        help="video codec to offer; repeat for an order of preference (default: H264, VP8)",
    )
    target.add_argument(
        "--renew-session",
        action="store_true",
        help="when the service ends the avatar session under us (WHEP 404), create a new one "
        "and carry on: the recording continues (default: exit with the error)",
    )
    target.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=20.0,
        metavar="S",
        help="bound on each phase of starting: the Control API's calls together, connecting "
        "the media, the first frame (default %(default)s)",
    )

    target.add_argument(
        "--read-interval",
        type=_read_interval,
        metavar="S",
        help="read the media sockets every S seconds (at most 0.2) instead of at each packet: "
        "about half the CPU for up to S more latency (default: 0, at each packet; "
        "fleet --job record: 0.1)",
    )

    video = parser.add_argument_group("video")
    video.add_argument(
        "--keyframe-wait",
        type=_seconds_or_never,
        default=1.0,
        metavar="S|never",
        help="after a loss the sender does not repair, decode without a keyframe after S "
        "seconds (artefacts over the stale picture, as browsers do); 'never': stay frozen "
        "until a keyframe comes (default %(default)s)",
    )
    video.add_argument(
        "--playout-delay",
        type=positive_float,
        metavar="S",
        help="hold decoded video up to S seconds so late frames play out evenly, as a browser "
        "does (default: none, the lowest latency; recordings are never delayed)",
    )

    ice = parser.add_argument_group("ICE")
    ice.add_argument(
        "--ice-policy",
        choices=("all", "relay"),
        default="all",
        help="'relay' uses TURN only (default %(default)s)",
    )
    ice.add_argument(
        "--stun", action="append", default=[], metavar="URL", help="extra STUN server (repeatable)"
    )
    ice.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="extra TURN server, e.g. turn:host:3478?transport=udp (repeatable)",
    )
    ice.add_argument("--turn-username", metavar="U", help="username of the --turn servers")
    ice.add_argument(
        "--turn-credential",
        metavar="C",
        help="credential of the --turn servers (or env AVATAR_TURN_CREDENTIAL); never printed",
    )
    ice.add_argument(
        "--gather-timeout",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="longest wait for ICE candidates, e.g. from unreachable TURN servers "
        "(default %(default)s)",
    )
    ice.add_argument(
        "--host-address",
        dest="host_addresses",
        action="append",
        metavar="ADDR",
        help="pin host candidates to this address (repeatable; default with the embedded "
        "emulator: 127.0.0.1, otherwise every interface)",
    )
