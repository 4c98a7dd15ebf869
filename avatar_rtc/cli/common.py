"""Shared by the commands, mostly ``probe``/``record``: what to connect to, how (ICE), stopping.

Target selection (first match wins):

1. ``--whep-url URL`` (``--bearer TOKEN``): any WHEP source, no Control API.
2. a KS or an API URL (``--ks``/``--api-url`` or env ``AVATAR_KS``/``AVATAR_API_URL``):
   the avatar service (or an emulator running elsewhere).
3. nothing: the embedded emulator, started in this process on a random loopback port.

Secrets given on the command line are wrapped in :class:`~avatar_rtc.redact.Secret` at once,
so the log filter masks them; every message this package prints goes through :func:`redact`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from ..errors import AvatarRTCError, ConfigurationError
from ..redact import Secret, redact
from ..rtc.ice_options import IceOptions
from ..rtc.ice_servers import IceServer, parse_ice_url

__all__ = [
    "EXIT_ERROR",
    "EXIT_NO_MEDIA",
    "EXIT_USAGE",
    "StopSignals",
    "Target",
    "TargetKind",
    "add_target_options",
    "error_line",
    "open_target",
    "parse_size",
    "run_command",
    "target_from_args",
]

TargetKind = Literal["emulator", "service", "whep"]

EXIT_ERROR = 1  # the service/WHEP/connection failed
EXIT_USAGE = 2  # bad options (argparse uses 2 as well)
EXIT_NO_MEDIA = 3  # connected, but no media arrived

LOOPBACK = "127.0.0.1"
CODECS = ("H264", "VP8")


@dataclass(frozen=True)
class Target:
    """What to connect to and how; built from the command line by :func:`target_from_args`."""

    kind: TargetKind
    api_url: str | None = None
    ks: Secret | None = None
    whep_url: str | None = None
    bearer: Secret | None = None
    avatar_id: str | None = None
    voice_id: str | None = None
    ice: IceOptions = field(default_factory=IceOptions)
    video_codecs: tuple[str, ...] = CODECS
    connect_timeout: float = 20.0

    def describe(self) -> str:
        """Where we connect, without any credential (for the summary lines)."""
        if self.kind == "whep":
            return f"WHEP {self.whep_url}"
        if self.kind == "service":
            return f"service {self.api_url or '(default API URL)'}"
        return "embedded emulator"


# --- options ------------------------------------------------------------------------------


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """Target selection, avatar choice and ICE options (shared by probe and record)."""
    target = parser.add_argument_group(
        "target",
        "Default: the embedded emulator (started in-process on a loopback port). With a KS "
        "(--ks or env AVATAR_KS) or an API URL: the avatar service. With --whep-url: any "
        "WHEP source. Prefer env variables for secrets: arguments are visible in `ps`.",
    )
    target.add_argument(
        "--api-url", metavar="URL", help="Control API base URL (env AVATAR_API_URL)"
    )
    target.add_argument("--ks", metavar="KS", help="Kaltura session (env AVATAR_KS); never printed")
    target.add_argument("--whep-url", metavar="URL", help="receive from this WHEP endpoint")
    target.add_argument("--bearer", metavar="TOKEN", help="Bearer token for --whep-url")
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
        "--connect-timeout",
        type=_positive_float,
        default=20.0,
        metavar="S",
        help="bound on connecting and on the first frame (default %(default)s)",
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
        "--turn-credential", metavar="C", help="credential of the --turn servers; never printed"
    )
    ice.add_argument(
        "--gather-timeout",
        type=_positive_float,
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


def _codec(value: str) -> str:
    codec = value.upper()
    if codec not in CODECS:
        raise argparse.ArgumentTypeError(f"expected H264 or VP8, got {value!r}")
    return codec


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


positive_float = _positive_float


def parse_size(value: str) -> tuple[int, int]:
    """``WxH`` -> ``(width, height)`` (an argparse ``type``)."""
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {value!r}") from None
    return width, height


def target_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Target:
    """The :class:`Target` of parsed options; ``ConfigurationError`` on inconsistent ones."""
    env = os.environ if environ is None else environ
    ks_value = args.ks or env.get("AVATAR_KS") or None
    api_url = args.api_url or env.get("AVATAR_API_URL") or None
    ks = Secret(ks_value) if ks_value else None  # registered for log redaction from now on
    bearer = Secret(args.bearer) if args.bearer else None
    kind: TargetKind
    if args.whep_url:
        kind = "whep"
        if args.ks or args.api_url:
            raise ConfigurationError("--whep-url cannot be combined with --ks/--api-url")
        if not args.whep_url.startswith(("http://", "https://")):
            raise ConfigurationError("--whep-url must be an http:// or https:// URL")
    elif ks is not None or api_url is not None:
        kind = "service"
    else:
        kind = "emulator"
    if kind != "whep" and bearer is not None:
        raise ConfigurationError("--bearer only applies to --whep-url")

    if kind != "emulator":
        avatar_id, voice_id = args.avatar_id, args.voice_id
    else:
        from ..emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID

        avatar_id = args.avatar_id or DEFAULT_VISUAL_ID
        voice_id = args.voice_id or DEFAULT_VOICE_ID
    return Target(
        kind=kind,
        api_url=api_url if kind == "service" else None,
        ks=ks if kind == "service" else None,
        whep_url=args.whep_url if kind == "whep" else None,
        bearer=bearer,
        avatar_id=avatar_id if kind != "whep" else None,
        voice_id=voice_id if kind != "whep" else None,
        ice=ice_options_from_args(args, embedded=kind == "emulator"),
        video_codecs=tuple(dict.fromkeys(args.codecs)) if args.codecs else CODECS,
        connect_timeout=args.connect_timeout,
    )


def ice_options_from_args(args: argparse.Namespace, *, embedded: bool) -> IceOptions:
    """IceOptions of the ICE flags; the embedded emulator is reached over loopback."""
    servers: list[IceServer] = []
    for url in args.stun:
        _check_ice_url(url, ("stun", "stuns"), "--stun")
        servers.append(IceServer(url))
    if (args.turn_username or args.turn_credential) and not args.turn:
        raise ConfigurationError("--turn-username/--turn-credential need a --turn URL")
    for url in args.turn:
        _check_ice_url(url, ("turn", "turns"), "--turn")
        servers.append(IceServer(url, args.turn_username, args.turn_credential))
    hosts: Sequence[str] | None = args.host_addresses or ((LOOPBACK,) if embedded else None)
    try:
        return IceOptions(
            policy=args.ice_policy,
            extra_servers=tuple(servers),
            host_addresses=tuple(hosts) if hosts else None,
            gather_timeout=args.gather_timeout,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _check_ice_url(url: str, schemes: tuple[str, ...], option: str) -> None:
    try:
        parsed = parse_ice_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"{option}: {exc}") from None
    if parsed.scheme not in schemes:
        raise ConfigurationError(f"{option} takes a {' or '.join(schemes)}: URL, got {url!r}")


# --- connecting -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_target(target: Target) -> AsyncIterator[dict[str, Any]]:
    """Keyword arguments for ``AvatarSession``; starts (and stops) the embedded emulator."""
    base: dict[str, Any] = {
        "avatar_id": target.avatar_id,
        "voice_id": target.voice_id,
        "ice": target.ice,
        "video_codecs": target.video_codecs,
        "connect_timeout": target.connect_timeout,
    }
    if target.kind == "whep":
        yield {**base, "whep_url": target.whep_url, "bearer": target.bearer}
        return
    if target.kind == "service":
        yield {**base, "api_url": target.api_url, "ks": target.ks}
        return

    from ..emulator import Emulator
    from ..emulator.media import AvatarMediaOptions

    # The emulator sends what was asked first, so --codec VP8 gets VP8 end to end.
    media = AvatarMediaOptions(video_codec="VP8" if target.video_codecs[0] == "VP8" else "H264")
    async with Emulator(host=LOOPBACK, port=0, media_options=media) as emulator:
        yield {**base, "api_url": emulator.api_url, "ks": Secret(emulator.ks)}


def error_line(command: str, exc: BaseException) -> str:
    """One line for an error, credentials masked: ``avatar-rtc probe: ConnectTimeoutError: ...``."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return redact(f"avatar-rtc {command}: {text}")


def print_error(command: str, exc: BaseException, stream: TextIO | None = None) -> None:
    print(error_line(command, exc), file=stream or sys.stderr, flush=True)


# --- stopping -------------------------------------------------------------------------------


class StopSignals:
    """SIGINT/SIGTERM handling for a command's main task.

    While :attr:`interruptible` is true (connecting: nothing to save yet) a signal cancels the
    task. Afterwards the first signal only sets :attr:`event`, so the command can finish its
    file; a second signal cancels the task anyway. :attr:`exit_code` is 128 + signal number.
    """

    def __init__(self, task: asyncio.Task[Any] | None = None) -> None:
        self.event = asyncio.Event()
        self.received: int | None = None
        self.interruptible = True
        self._task = task if task is not None else asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._installed: list[int] = []

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else 128 + self.received

    def install(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Windows: no add_signal_handler; Ctrl-C is then a KeyboardInterrupt (exit 130).
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
        return self

    def remove(self) -> None:
        for sig in self._installed:
            self._loop.remove_signal_handler(sig)
        self._installed.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _on_signal(self, sig: int) -> None:
        again = self.event.is_set()
        if self.received is None:
            self.received = sig
        self.event.set()
        if (self.interruptible or again) and self._task is not None:
            self._task.cancel()

    async def wait(self, seconds: float | None = None) -> bool:
        """Wait for a stop signal; True when one came within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self.event.wait()
        except TimeoutError:
            return False
        return True


async def race_stop(stop: StopSignals, awaitable: Any) -> tuple[bool, Any]:
    """Run ``awaitable`` until it completes or a stop signal comes: ``(stopped, result)``."""
    task: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(stop.event.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task in done:
        return False, task.result()
    return True, None


def run_command(command: str, body: Callable[[StopSignals], Awaitable[int]]) -> int:
    """Run ``body(stop)`` on a new event loop under :class:`StopSignals`; the exit status.

    A signal that cancels it prints ``avatar-rtc COMMAND: interrupted`` and gives 128 + the
    signal number; an error of the service/connection/OS is one line on stderr and
    ``EXIT_ERROR``; Ctrl-C without signal handlers (Windows) gives 130.
    """
    try:
        return asyncio.run(_run_stoppable(command, body))
    except KeyboardInterrupt:  # no signal handlers (Windows)
        return 130


async def _run_stoppable(command: str, body: Callable[[StopSignals], Awaitable[int]]) -> int:
    stop = StopSignals().install()
    try:
        return await body(stop)
    except asyncio.CancelledError:
        if stop.received is None:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        print(f"avatar-rtc {command}: interrupted", file=sys.stderr, flush=True)
        return stop.exit_code or 130
    except (AvatarRTCError, OSError, ValueError) as exc:
        print_error(command, exc)
        return EXIT_ERROR
    finally:
        stop.remove()
