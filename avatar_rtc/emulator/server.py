"""The emulator: an aiohttp app serving the Control API, the catalog and WHEP.

Usable in-process (``async with Emulator() as emu``) and from ``avatar-rtc emulator``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import logging
import math
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web

from ..api.models import TurnConfig
from ..redact import register_secret
from ..tasks import cancel_and_wait
from .auth import KsAuthority, TokenAuthority
from .control import API_PREFIX, WHEP_PREFIX, ControlApi, ControlConfig
from .counters import EmulatorCounters
from .faults import FaultInjector
from .state import EmulatedSession, MediaLike, SessionRegistry

__all__ = ["Emulator"]

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .media import AvatarMedia, AvatarMediaOptions

MediaFactory = Callable[[], MediaLike]


class Emulator:
    """An in-process emulator of the Kaltura Avatar real-time service.

    ``media_enabled=False`` serves the Control API alone (no synthetic avatar, WHEP 404s);
    ``media_factory`` replaces the synthetic avatar (tests pass a fake to see the calls;
    no WHEP routes then).
    ``ended_end_status`` is what ``end`` answers for an ended session: 404 like the live
    service, or 410 like the docs. ``ks`` fixes the admin KS (default: random per instance).
    ``turn_secret`` (with ``turn``): init-client hands out fresh TURN REST credentials per
    session, like the service's (coturn ``--use-auth-secret``). ``whep_url_template``:
    init-client hands out this WHEP URL (``{session_id}`` replaced) instead of ours.
    ``fanout=True``: a load generator, every session plays one shared pre-encoded stream
    (``emulator.fanout``; say-text is accepted and ignored); ``fanout_ticks``: how many 20 ms
    ticks of it are sent per wake-up (``FanoutSource.ticks_per_wakeup``).
    ``ice_restart=True``: WHEP resources take PATCH and restart ICE (``emulator.whep``); the
    service announces no PATCH, so by default neither does the emulator.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = 60.0,
        token_ttl: float = 86400.0,
        turn: TurnConfig | None = None,
        media_options: AvatarMediaOptions | None = None,
        media_enabled: bool = True,
        media_factory: MediaFactory | None = None,
        ended_end_status: int = 404,
        say_text_requires_voice: bool = False,
        ks: str | None = None,
        turn_secret: str | None = None,
        whep_url_template: str | None = None,
        fanout: bool = False,
        fanout_ticks: int = 1,
        ice_restart: bool = False,
    ) -> None:
        if ended_end_status not in (404, 410):
            raise ValueError("ended_end_status must be 404 or 410")
        if not (0 < idle_timeout < math.inf and 0 < token_ttl < math.inf):  # (NaN too)
            raise ValueError("idle_timeout and token_ttl must be > 0 and finite")
        if turn_secret is not None and turn is None:
            raise ValueError("turn_secret needs a turn server (its url)")
        if fanout_ticks < 1 or (fanout_ticks > 1 and not fanout):
            raise ValueError("fanout_ticks: at least 1, and more only with fanout=True")
        faults = media_options.faults if media_options is not None else None
        if fanout and faults is not None and faults != type(faults)():  # (armed: not default)
            # One stream encoded once for every viewer: there is no per-session media to fault.
            raise ValueError("media faults cannot be injected into the fan-out stream")
        self.host = host
        self._requested_port = port
        self.port = 0
        self.idle_timeout = idle_timeout
        self.counters = EmulatorCounters()
        self.faults = FaultInjector()
        self._ks = KsAuthority(ks)
        # The emulator's KS is no user's secret, but logs should not teach people to paste KSs.
        register_secret(self._ks.admin_ks)
        register_secret(self._ks.non_admin_ks)
        self._tokens = TokenAuthority(token_ttl)
        self._registry = SessionRegistry(idle_timeout)
        self._turn = turn
        self._turn_secret = turn_secret
        if turn_secret:
            register_secret(turn_secret)
        self._whep_url_template = whep_url_template
        self._ended_end_status = ended_end_status
        self._say_text_requires_voice = say_text_requires_voice
        self._media_options = media_options
        self._media_enabled = media_enabled
        self._media_factory = media_factory
        self._fanout = fanout
        self._fanout_ticks = fanout_ticks
        self._ice_restart = ice_restart
        self._control: ControlApi | None = None
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # --- public properties ----------------------------------------------------

    @property
    def ks(self) -> str:
        """The admin KS this emulator accepts on create and catalog."""
        return self._ks.admin_ks

    @property
    def non_admin_ks(self) -> str:
        """A valid KS without admin rights: create answers 403."""
        return self._ks.non_admin_ks

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the emulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    def whep_url(self, session_id: str) -> str:
        return f"{self.base_url}{WHEP_PREFIX}/{session_id}"

    def session(self, session_id: str) -> EmulatedSession:
        """The emulated session (live, ended or expired); KeyError when unknown."""
        session = self._registry.get(session_id)
        if session is None:
            raise KeyError(session_id)
        return session

    def avatar_media(self, session_id: str) -> AvatarMedia:
        """The synthetic avatar of a session, e.g. to inject media faults
        (``inject_faults``) or read its timeline; KeyError when unknown, TypeError when the
        session has none (``media_enabled=False``, ``media_factory``, fan-out)."""
        from .media import AvatarMedia

        media = self.session(session_id).media
        if not isinstance(media, AvatarMedia):
            raise TypeError(f"session {session_id} has no synthetic avatar")
        return media

    @property
    def sessions(self) -> list[EmulatedSession]:
        return list(self._registry)

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> Emulator:
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=64 * 1024 * 1024)
        # The port (hence base_url) is known only once listening; the config is filled then.
        config = ControlConfig(
            base_url="",
            turn=self._turn,
            turn_secret=self._turn_secret,
            whep_url_template=self._whep_url_template,
            ended_end_status=self._ended_end_status,
            say_text_requires_voice=self._say_text_requires_voice,
        )
        control = ControlApi(
            config=config,
            registry=self._registry,
            ks=self._ks,
            tokens=self._tokens,
            counters=self.counters,
            faults=self.faults,
            media_factory=self._resolve_media_factory(),
        )
        control.add_routes(app)
        if self._media_enabled and self._media_factory is None:
            # WHEP serves the real synthetic avatar only; with a fake factory it is absent.
            self._add_whep_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        config.base_url = self.base_url
        self._control = control
        self._sweeper = asyncio.create_task(self._sweep(), name="emulator-idle-sweep")
        logger.info("emulator listening on %s", self.base_url)
        return self

    def _resolve_media_factory(self) -> MediaFactory | None:
        if self._media_factory is not None:
            return self._media_factory
        if not self._media_enabled:
            return None
        # Imported here: the media stack (PyAV encoders) is only needed when serving media.
        from .media import AvatarMedia, AvatarMediaOptions

        options = self._media_options or AvatarMediaOptions()
        if options.host_addresses is None and _is_loopback(self.host):
            # An emulator on loopback offers loopback candidates (aioice skips 127.0.0.1).
            options = dataclasses.replace(options, host_addresses=(self.host,))
        if self._fanout:
            from .fanout import FanoutMedia, FanoutSource

            source = FanoutSource(options, ticks_per_wakeup=self._fanout_ticks)
            return lambda: FanoutMedia(source)
        return lambda: AvatarMedia(options)

    def _add_whep_routes(self, app: web.Application) -> None:
        from .fanout import FanoutMedia
        from .media import AvatarMedia
        from .whep import WhepMedia, add_whep_routes

        def lookup(session_id: str) -> WhepMedia | None:
            # Only a live session's real synthetic avatar (or fan-out) can be viewed (a fake
            # from media_factory cannot); anything else is a WHEP 404.
            media = self._registry.live_media(session_id)
            return media if isinstance(media, AvatarMedia | FanoutMedia) else None

        add_whep_routes(app, lookup, ice_restart=self._ice_restart)

    async def stop(self) -> None:
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
            self._sweeper = None
        if self._control is not None:
            await self._control.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        logger.info("emulator stopped")

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self, timeout: float = 30.0) -> Iterator[Emulator]:
        """Run the emulator on its own event loop in a background thread (for sync code).

        ``with Emulator().in_thread() as emu: ...``; counters and faults may be read and
        armed from the calling thread (plain attribute updates).
        """
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="avatar-rtc-emulator", daemon=True)
        thread.start()
        try:
            starting = asyncio.run_coroutine_threadsafe(self.start(), loop)
            try:
                starting.result(timeout)
            except BaseException:  # (a Ctrl-C while starting: let the start unwind first)
                starting.cancel()
                concurrent.futures.wait([starting], timeout)
                raise
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
            finally:
                # Whatever a start cut short left running ends here, not in "Task was
                # destroyed but it is pending" warnings at exit.
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(timeout)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
                loop.close()

    async def _sweep(self) -> None:
        # Close the media of idle sessions even when no client calls in any more.
        period = min(1.0, max(self.idle_timeout / 4, 0.05))
        while True:
            await asyncio.sleep(period)
            if self._control is None:
                continue
            try:
                await self._control.expire_idle()
            except Exception:  # keep sweeping: one bad media close must not stop expiry
                logger.exception("emulator: idle sweep failed")


async def _cancel_the_rest() -> None:
    rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"  # a name, not an address: loopback only by convention
