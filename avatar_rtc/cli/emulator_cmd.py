"""``avatar-rtc emulator``: run the embedded emulator until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from typing import TYPE_CHECKING, Any

from .. import event_loop
from ..errors import AvatarRTCError, ConfigurationError
from ..redact import Secret
from .arguments import add_command, parse_size, port_number, positive_int
from .exit_status import exit_code_of, print_error

if TYPE_CHECKING:
    from ..emulator import Emulator
    from ..emulator.media.media_faults import MediaFaults

__all__ = ["register", "run"]

ENV_TURN_SECRET = "AVATAR_EMULATOR_TURN_SECRET"
ENV_KS = "AVATAR_EMULATOR_KS"


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "emulator",
        help="run an emulator of the avatar service (Control API + WHEP + synthetic avatar)",
        description="Run an emulator of the Kaltura Avatar real-time service on this machine\n"
        "until Ctrl-C or SIGTERM, which end it normally: exit 0 (not 130/143 as below).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=port_number, default=8080, help="0 picks a free port (default %(default)s)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds without keep-alive before a session expires (default %(default)s)",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=86400.0,
        metavar="S",
        help="lifetime of the session JWTs (default %(default)s)",
    )
    parser.add_argument(
        "--turn-url", metavar="URL", help="TURN host/URL handed out by init-client (default: none)"
    )
    # Not a word of ordinary text: a client masks the credentials it receives in every line.
    parser.add_argument(
        "--turn-username",
        default="emulator-turn-user",
        metavar="U",
        help="username init-client hands out with --turn-url (default %(default)s)",
    )
    parser.add_argument(
        "--turn-credential",
        metavar="C",
        help="credential init-client hands out with --turn-url (default: a random one for "
        "this run; set it to your TURN server's; never printed)",
    )
    parser.add_argument(
        "--turn-secret",
        metavar="SECRET",
        help="TURN REST shared secret (coturn --static-auth-secret): init-client hands out "
        "fresh per-session credentials for --turn-url, as the service does (env "
        f"{ENV_TURN_SECRET}; never printed)",
    )
    parser.add_argument(
        "--whep-url-override",
        metavar="URL",
        help="WHEP URL init-client hands out instead of the emulator's own "
        "('{session_id}' is replaced): another sender, or a proxy in front of ours",
    )
    parser.add_argument(
        "--ks",
        metavar="KS",
        help="admin KS to accept (default: a random one, printed; --ks=KS if it begins with "
        f"'-'; env {ENV_KS}, better for a real one: not on the command line); a given one is "
        "never printed",
    )
    parser.add_argument(
        "--ended-end-status",
        type=int,
        choices=(404, 410),
        default=404,
        help="status of end on an ended session: 404 (live service) or 410 (docs) "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--ice-restart",
        action="store_true",
        help="WHEP resources take PATCH and restart ICE (the service announces no PATCH)",
    )
    parser.add_argument(
        "--say-text-requires-voice",
        action="store_true",
        help="answer say-text 503 for sessions created without a voice (as seen live)",
    )
    media = parser.add_argument_group("synthetic avatar")
    media.add_argument("--no-media", action="store_true", help="Control API only, no WHEP/avatar")
    media.add_argument(
        "--video-codec",
        choices=("H264", "VP8"),
        default="H264",
        help="codec the avatar is sent in (default %(default)s)",
    )
    media.add_argument("--fps", type=int, default=25, help="frame rate (default %(default)s)")
    media.add_argument(
        "--size",
        type=parse_size,
        default="512x512",
        metavar="WxH",
        help="frame size (default %(default)s)",
    )
    media.add_argument(
        "--tts",
        choices=("auto", "espeak-ng", "builtin"),
        default="auto",
        help="speech synthesis of say-text: espeak-ng if installed (auto), else a built-in "
        "vowel-tone synthesizer (default %(default)s)",
    )
    media.add_argument(
        "--fanout",
        action="store_true",
        help="load generator: every session plays one shared stream, encoded once (say-text "
        "is ignored)",
    )
    media.add_argument(
        "--fanout-ticks",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --fanout: send N 20 ms ticks of media per wake-up, the later ones early "
        "(fewer wake-ups: 2 cost about a third less CPU for a few viewers; audio then comes in "
        "pairs) (default %(default)s)",
    )
    _add_fault_options(parser)
    parser.set_defaults(handler=run, imports=("avatar_rtc.emulator",))


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group(
        "media faults (every session; a window's START counts from the start of the session's "
        "first turn, each window happens once; truth is logged on the session's timeline)"
    )
    faults.add_argument(
        "--av-offset",
        type=float,
        default=0.0,
        metavar="MS",
        help="A/V offset in ms, positive: the sound comes before the picture",
    )
    faults.add_argument(
        "--speech-delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="ms of silence before every turn's speech (sound and mouth)",
    )
    faults.add_argument(
        "--packet-loss",
        type=_percent,
        default=0.0,
        metavar="PCT",
        help="percent of video RTP packets dropped at random (NACKs may repair them)",
    )
    windows = {
        "--freeze": "the picture freezes: the same frame is sent again",
        "--freeze-withheld": "the picture freezes: no video frame is sent",
        "--black": "black picture",
        "--audio-dropout": "digital silence instead of the sound",
        "--audio-withheld": "no audio packet is sent",
    }
    for flag, what in windows.items():
        faults.add_argument(flag, type=_window, metavar="START:LENGTH", help=f"{what} (seconds)")
    faults.add_argument(
        "--fps-drop",
        type=_fps_drop,
        metavar="START:LENGTH:FPS",
        help="only FPS frames a second are sent (seconds, seconds, frames a second)",
    )


def _window(value: str) -> Any:
    from ..emulator.media.media_faults import parse_window

    try:
        return parse_window(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fps_drop(value: str) -> Any:
    from ..emulator.media.media_faults import parse_fps_drop

    try:
        return parse_fps_drop(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _faults(args: argparse.Namespace) -> MediaFaults:
    from ..emulator.media.media_faults import MediaFaults

    return MediaFaults(
        av_offset_ms=args.av_offset,
        speech_delay_ms=args.speech_delay,
        video_packet_loss=args.packet_loss / 100 if args.packet_loss else None,
        freeze_repeated=args.freeze,
        freeze_withheld=args.freeze_withheld,
        black=args.black,
        fps_drop=args.fps_drop,
        audio_dropout=args.audio_dropout,
        audio_withheld=args.audio_withheld,
    )


def run(args: argparse.Namespace) -> int:
    args.ks = _given_ks(args)  # resolved once: the emulator accepts it, _serve hides it
    try:
        emulator = _build(args)
    except ValueError as exc:  # options out of range (media size, fps, timeouts)
        print(f"avatar-rtc emulator: {exc}", file=sys.stderr)
        return ConfigurationError.exit_code
    try:
        event_loop.run(_serve(emulator, given_ks=args.ks is not None))
    except BrokenPipeError:
        raise  # stdout closed: main() exits quietly
    except ConfigurationError as exc:  # AVATAR_RTC_EVENT_LOOP: misspelt, or uvloop missing
        print_error("emulator", exc)
        return exit_code_of(exc)
    except OSError as exc:
        print(
            f"avatar-rtc emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return AvatarRTCError.exit_code
    return 0


def _percent(value: str) -> float:
    """A loss percentage: within [0, 100)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {value!r}") from None
    if not 0 <= number < 100:  # (NaN too)
        raise argparse.ArgumentTypeError(f"expected a percentage within [0, 100), got {value!r}")
    return number


def _given_ks(args: argparse.Namespace) -> str | None:
    """The KS to accept: --ks, else the environment; None: the emulator makes one up."""
    return args.ks or os.environ.get(ENV_KS) or None


def _build(args: argparse.Namespace) -> Emulator:
    from ..api.models import TurnConfig
    from ..emulator import Emulator

    turn = None
    turn_secret = args.turn_secret or os.environ.get(ENV_TURN_SECRET) or None
    if turn_secret and not args.turn_url:
        raise ValueError("--turn-secret needs --turn-url")
    if args.fanout_ticks != 1 and not args.fanout:
        raise ValueError("--fanout-ticks needs --fanout")
    if args.turn_url:
        credential = args.turn_credential or secrets.token_urlsafe(16)
        turn = TurnConfig(args.turn_url, Secret(args.turn_username), Secret(credential))
    faults = _faults(args)
    if args.no_media and faults != type(faults)():
        raise ValueError("media faults need media (not --no-media)")
    media_options = None
    if not args.no_media:
        from ..emulator.media import AvatarMediaOptions

        width, height = args.size
        media_options = AvatarMediaOptions(
            width=width,
            height=height,
            fps=args.fps,
            video_codec=args.video_codec,
            tts=args.tts,
            faults=faults,
        )
    return Emulator(
        host=args.host,
        port=args.port,
        idle_timeout=args.idle_timeout,
        token_ttl=args.token_ttl,
        turn=turn,
        media_enabled=not args.no_media,
        media_options=media_options,
        say_text_requires_voice=args.say_text_requires_voice,
        ended_end_status=args.ended_end_status,
        ks=args.ks,
        turn_secret=turn_secret,
        whep_url_template=args.whep_url_override,
        fanout=args.fanout,
        fanout_ticks=args.fanout_ticks,
        ice_restart=args.ice_restart,
    )


async def _serve(emulator: Emulator, *, given_ks: bool) -> None:
    from ..emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler; Ctrl-C then arrives as KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        # The generated KS opens only this emulator; a given one may be real: never echo it.
        ks = f"(the one given with --ks or {ENV_KS})" if given_ks else emulator.ks
        print(f"avatar-rtc emulator listening on {emulator.base_url}")
        print(f"AVATAR_API_URL={emulator.api_url}")
        print(f"AVATAR_KS={ks}")
        print(f"default visual id: {DEFAULT_VISUAL_ID}  voice id: {DEFAULT_VOICE_ID}")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    print("avatar-rtc emulator stopped", flush=True)
