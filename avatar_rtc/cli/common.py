"""Shared by the commands, mostly ``probe``/``record``: what to connect to, how (ICE), stopping.

Loaded by a command's handler, not to build the parsers (the flags: :mod:`.arguments`): the
session options import the network stack, too slow for ``--help``.

Target selection (first match wins):

1. ``--whep-url URL`` (``--bearer TOKEN`` or env ``AVATAR_BEARER``): any WHEP source, no
   Control API.
2. a KS or an API URL (``--ks``/``--api-url`` or env ``AVATAR_KS``/``AVATAR_API_URL``):
   the avatar service (or an emulator running elsewhere).
3. nothing: the embedded emulator, started in this process on a random loopback port.

The flags become one :class:`~avatar_rtc.options.SessionOptions` (the session's own type, which
also checks their consistency). Each secret can come from the environment instead (``AVATAR_KS``,
``AVATAR_BEARER``, ``AVATAR_TURN_CREDENTIAL``): a command line is readable by other local users.
Secrets are wrapped in :class:`~avatar_rtc.redact.Secret` at once, so the log filter masks them;
every message this package prints goes through :func:`redact`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from .. import event_loop
from ..errors import AvatarRTCError, ConfigurationError, NoMediaError
from ..options import SessionOptions
from ..redact import Secret, redact
from ..rtc.ice_options import IceOptions
from ..rtc.ice_servers import IceServer, parse_ice_url
from ..rtc.reconnect import ReconnectPolicy
from ..rtc.video_codecs import RECEIVABLE_VIDEO_CODECS
from ..tasks import cancel_and_wait
from .exit_status import EXIT_SIGINT, exit_code_of, print_error

if TYPE_CHECKING:
    from ..emulator.media import AvatarMediaOptions
    from ..session import AvatarSession, SessionEvent

__all__ = [
    "StopSignals",
    "Target",
    "TargetKind",
    "announce_reconnects",
    "embedded_emulator_media",
    "open_target",
    "race_stop",
    "run_command",
    "target_from_args",
]

TargetKind = Literal["emulator", "service", "whep"]

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    """Which kind of source (``kind``) and the session's options; built from the command line
    by :func:`target_from_args`. The embedded emulator's URL and KS are only known once
    :func:`open_target` started it."""

    kind: TargetKind
    options: SessionOptions = field(default_factory=SessionOptions)

    @property
    def connect_timeout(self) -> float:
        """Also the commands' bound on the first frame."""
        return self.options.connect_timeout

    def describe(self) -> str:
        """Where we connect, without any credential (for the summary lines)."""
        if self.kind == "whep":
            return redact(f"WHEP {self.options.whep_url}")
        if self.kind == "service":
            return redact(f"service {self.options.api_url or '(default API URL)'}")
        return "embedded emulator"


# --- from the parsed options (the parser: arguments.py) ---------------------------------


def target_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Target:
    """The :class:`Target` of parsed options; ``ConfigurationError`` on inconsistent ones."""
    env = os.environ if environ is None else environ
    kind: TargetKind
    bearer: str | None = None
    if args.whep_url:
        kind = "whep"
        # Only flags conflict with it (SessionOptions says so): the environment's KS is unused.
        api_url, ks = args.api_url, args.ks
        bearer = args.bearer or env.get("AVATAR_BEARER") or None
    else:
        api_url = args.api_url or env.get("AVATAR_API_URL") or None
        ks = args.ks or env.get("AVATAR_KS") or None
        kind = "service" if api_url or ks else "emulator"
    if kind != "whep" and args.bearer:
        raise ConfigurationError("--bearer only applies to --whep-url")
    if kind == "service" and not ks:  # (the client would say so once connecting)
        raise ConfigurationError("--api-url needs a KS: --ks, or env AVATAR_KS")
    avatar_id, voice_id = args.avatar_id, args.voice_id
    if kind == "emulator":
        from ..emulator import DEFAULT_VISUAL_ID, DEFAULT_VOICE_ID

        avatar_id = avatar_id or DEFAULT_VISUAL_ID
        voice_id = voice_id or DEFAULT_VOICE_ID
    options = SessionOptions(
        api_url=api_url,
        ks=Secret(ks) if ks else None,  # registered for log redaction from now on
        avatar_id=avatar_id,
        voice_id=voice_id,
        whep_url=args.whep_url,
        bearer=Secret(bearer) if bearer else None,
        ice=ice_options_from_args(args, embedded=kind == "emulator", environ=env),
        video_codecs=tuple(args.codecs or RECEIVABLE_VIDEO_CODECS),
        connect_timeout=args.connect_timeout,
        reconnect=ReconnectPolicy(new_session_on_not_found=args.renew_session),
        keyframe_wait=args.keyframe_wait,
        max_playout_delay=args.playout_delay,
        read_interval=args.read_interval or 0.0,
    )
    return Target(kind, options)


def ice_options_from_args(
    args: argparse.Namespace, *, embedded: bool, environ: Mapping[str, str] | None = None
) -> IceOptions:
    """IceOptions of the ICE flags; the embedded emulator is reached over loopback. The TURN
    credential may come from env ``AVATAR_TURN_CREDENTIAL`` (used only with ``--turn``)."""
    env = os.environ if environ is None else environ
    credential = args.turn_credential or env.get("AVATAR_TURN_CREDENTIAL") or None
    servers: list[IceServer] = []
    for url in args.stun:
        _check_ice_url(url, ("stun", "stuns"), "--stun")
        servers.append(IceServer(url))
    if (args.turn_username or args.turn_credential) and not args.turn:
        raise ConfigurationError("--turn-username/--turn-credential need a --turn URL")
    for url in args.turn:
        _check_ice_url(url, ("turn", "turns"), "--turn")
        servers.append(IceServer(url, args.turn_username, credential))
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
async def open_target(target: Target) -> AsyncIterator[SessionOptions]:
    """The ``AvatarSession`` options of ``target``; starts (and stops) the embedded emulator."""
    if target.kind != "emulator":
        yield target.options
        return

    from ..emulator import Emulator

    media = embedded_emulator_media(target)
    async with Emulator(host=LOOPBACK, port=0, media_options=media) as emulator:
        yield replace(target.options, api_url=emulator.api_url, ks=Secret(emulator.ks))


def embedded_emulator_media(target: Target) -> AvatarMediaOptions:
    """What the embedded emulator of ``target`` sends: the codec asked for first (so --codec
    VP8 gets VP8 end to end), the rest its defaults."""
    from ..emulator.media import AvatarMediaOptions

    first = target.options.video_codecs[0]
    return AvatarMediaOptions(video_codec="VP8" if first == "VP8" else "H264")


def announce_reconnects(
    session: AvatarSession, command: str, new_line: Callable[[], None] | None = None
) -> Callable[[], None]:
    """A line on stderr when the media is lost and when it is back; returns the remover.

    ``new_line`` ends an in-place progress line first (``Progress.finish``).
    """

    def show(event: SessionEvent) -> None:
        outage = event.data
        if event.name == "reconnecting":
            text = f"media lost ({outage.reason}): reconnecting"
        else:
            how = (
                "a new service session"
                if outage.new_session
                else "a new connection"
                if outage.replaced
                else "the same connection, ICE restarted"
                if outage.ice_restarted
                else "the same connection"
            )
            text = f"media back after {outage.seconds:.1f} s on {how}"
        if new_line is not None:
            new_line()
        print(redact(f"avatar-rtc {command}: {text}"), file=sys.stderr, flush=True)

    removers = [session.on("reconnecting", show), session.on("reconnected", show)]

    def remove() -> None:
        for remover in removers:
            remover()

    return remove


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


async def first_frame_or_stop(stop: StopSignals, session: AvatarSession, seconds: float) -> bool:
    """Wait for the session's first video frame; True if a stop signal came first. No frame
    within ``seconds`` is a :class:`NoMediaError`."""
    try:
        stopped, _ = await race_stop(stop, session.wait_first_frame(seconds))
    except TimeoutError:
        raise NoMediaError(f"no video frame within {seconds:g} s of connecting") from None
    return stopped


async def race_stop(stop: StopSignals, awaitable: Any) -> tuple[bool, Any]:
    """Run ``awaitable`` until it completes or a stop signal comes: ``(stopped, result)``."""
    task: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(stop.event.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
    if task in done:
        return False, task.result()
    return True, None


def run_command(command: str, body: Callable[[StopSignals], Awaitable[int]]) -> int:
    """Run ``body(stop)`` on a new event loop under :class:`StopSignals`; the exit status.

    A signal that cancels it prints ``avatar-rtc COMMAND: interrupted`` and gives 128 + the
    signal number; an error of the service/connection/OS is one line on stderr and the
    error's exit status (``exit_code``); Ctrl-C without signal handlers (Windows) gives 130.
    A closed stdout (``BrokenPipeError``) is left to ``main``. The loop is asyncio's unless
    ``AVATAR_RTC_EVENT_LOOP`` asks for uvloop's (:mod:`avatar_rtc.event_loop`).
    """
    try:
        return event_loop.run(_run_stoppable(command, body))
    except ConfigurationError as exc:  # AVATAR_RTC_EVENT_LOOP: misspelt, or uvloop missing
        print_error(command, exc)
        return exit_code_of(exc)
    except KeyboardInterrupt:  # before our handlers were installed, or none (Windows)
        print(f"avatar-rtc {command}: interrupted", file=sys.stderr, flush=True)
        return EXIT_SIGINT


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
        return stop.exit_code or EXIT_SIGINT
    except BrokenPipeError:
        raise
    except (AvatarRTCError, OSError, ValueError) as exc:
        print_error(command, exc)
        return exit_code_of(exc)
    finally:
        stop.remove()
