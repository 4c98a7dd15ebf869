"""Keeping the media up: a :class:`MediaConnection` that comes back after a loss.

:class:`Reconnector` connects once, then watches the media (:class:`.watchdog.MediaWatchdog`:
no RTP/RTCP for ``media_timeout`` s, ICE failed, DTLS closed). After a loss it emits
``on_reconnecting`` and tries, with backoff (:class:`ReconnectPolicy`), to get media back:

1. The old connection may come back by itself (a network outage shorter than ICE's ~30 s
   consent timeout): nothing is torn down while the network is down (:mod:`.reachability`
   probes the WHEP server and the path's first hop), and when it comes back the old path gets
   ``_COMEBACK_GRACE`` s to deliver media before it is replaced. Unless only UDP is down (the
   UDP TURN server silent, the WHEP server answering over TCP: a firewall closed UDP): then
   the attempts below go on, and a new path may take TURN over TCP or TLS.
2. Otherwise, where the WHEP server announced PATCH (``Accept-Patch``), an ICE restart
   (:meth:`.connection.MediaConnection.restart_ice`): new credentials and candidates (a new
   TURN allocation) by PATCH, a new path checked, the same peer connection, DTLS session,
   streams and SSRCs; media back after one more round trip.
3. Otherwise (no PATCH, the server refused it, or the new checks failed), in the same attempt,
   a new peer connection: DELETE the old WHEP resource first (the avatar service takes one
   viewer per stream), POST a new offer, ICE, DTLS, first packet. The receive pipelines move
   to the new receivers (the connection's ``on_receiver`` hook), so streams, decoders and
   recorders carry on; the new stream's first frame is a keyframe.

A server that refused an ICE restart (405/422/501) is not asked again. A new POST answered
404 means the service session is gone: :class:`~avatar_rtc.errors.WhepNotFoundError` at once,
unless the policy says ``new_session_on_not_found`` and the owner gave a ``renew`` hook
(``AvatarSession`` creates a new service session for the same avatar; the POST is then made
to its WHEP URL). A new POST refused (TCP RST: the network works, the WHEP server does not
listen) ``refused_attempts`` times in a row, spaced ``initial_delay`` apart, means the
sender is gone: :class:`~avatar_rtc.errors.ServiceUnreachableError`, about a second after the
loss was noticed. After ``max_attempts`` the loss is final:
:class:`~avatar_rtc.errors.MediaLostError`.

This module stays light (no aiortc import): :mod:`avatar_rtc.options` imports the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from ..errors import (
    AvatarRTCError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    MediaLostError,
    NoMediaError,
    RateLimitedError,
    ServerError,
    ServiceUnreachableError,
    TransportError,
    WhepError,
    WhepNotFoundError,
)
from ..tasks import cancel_and_wait
from .reachability import ReachabilityMonitor, probe_targets, verdict
from .watchdog import LastActivity, MediaWatchdog

if TYPE_CHECKING:
    from .connection import ConnectionState, MediaConnection

__all__ = ["Outage", "ReconnectPolicy", "ReconnectStats", "Reconnector"]

logger = logging.getLogger(__name__)

# Once the network answers again, the old path gets this long to carry media (it does within
# tens of ms when it survived) before it is replaced.
_COMEBACK_GRACE = 0.5
_TICK = 0.05
# Control API errors of a renewal (see ``renew``) worth another attempt; others are final.
_RENEW_RETRIED = (ServerError, RateLimitedError)


@dataclass(frozen=True)
class ReconnectPolicy:
    """When media counts as lost and how hard to get it back.

    - ``enabled``: False = a loss (ICE failed, DTLS closed) is final at once, as without a
      watchdog (no-media detection off).
    - ``media_timeout``: seconds without any RTP or RTCP sender report that count as a loss.
    - Backoff before attempt *n* (0-based): ``min(max_delay, initial_delay * multiplier**n)``
      times a random factor in ``[1 - jitter, 1 + jitter]`` (defaults: 0.3 s doubling to 7 s,
      like browsers' and LiveKit's clients); a network coming back ends the wait early.
    - ``max_attempts``: backoff slots before giving up (~45 s with the defaults).
    - ``attempt_timeout``: bound on one new connection (WHEP, ICE, DTLS, first packet).
    - ``probe_interval``: how often the network is probed while media is lost.
    - ``refused_attempts``: new connections refused by the WHEP server's host in a row (the
      network works, nothing listens: the sender is gone) after which the loss is final
      (:class:`~avatar_rtc.errors.ServiceUnreachableError`); they are ``initial_delay`` apart.
    - ``ice_restart``: try an ICE restart through WHEP PATCH first where the server announced
      PATCH (``Accept-Patch``); False: always a new connection.
    - ``new_session_on_not_found``: when WHEP answers 404 (the service session is gone),
      create a new service session (same avatar and options) and connect to it, instead of
      failing with :class:`~avatar_rtc.errors.WhepNotFoundError` (``AvatarSession`` with the
      Control API only; the ``reconnected`` outage then says ``new_session``).
    """

    enabled: bool = True
    media_timeout: float = 2.0
    initial_delay: float = 0.3
    max_delay: float = 7.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 10
    attempt_timeout: float = 10.0
    probe_interval: float = 0.25
    refused_attempts: int = 3
    ice_restart: bool = True
    new_session_on_not_found: bool = False

    def __post_init__(self) -> None:
        positive = ("media_timeout", "initial_delay", "max_delay", "attempt_timeout",
                    "probe_interval")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"ReconnectPolicy.{name} must be > 0")
        if (
            self.multiplier < 1
            or not 0 <= self.jitter < 1
            or self.max_attempts < 1
            or self.refused_attempts < 1
        ):
            raise ConfigurationError(
                "ReconnectPolicy: multiplier must be >= 1, jitter in [0, 1), max_attempts >= 1, "
                "refused_attempts >= 1"
            )

    @classmethod
    def disabled(cls) -> ReconnectPolicy:
        return cls(enabled=False)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based), jitter included."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** min(attempt, 64))
        factor = 1.0 + self.jitter * (rng or random).uniform(-1.0, 1.0)
        return base * factor


@dataclass(frozen=True)
class Outage:
    """One loss of media: the data of the ``reconnecting`` and ``reconnected`` events.

    ``started``: ``time.monotonic()`` of the last media before the loss. ``seconds``: from then
    to the first media after it (``None`` while it lasts). ``attempts``: ICE restarts and new
    connections tried. ``replaced``: the media came back on a new peer connection (False: the
    old one recovered). ``ice_restarted``: it came back on the old one after an ICE restart.
    ``new_session``: a new service session was created for it (WHEP 404, see
    ``ReconnectPolicy.new_session_on_not_found``).
    """

    reason: str
    started: float
    attempts: int = 0
    seconds: float | None = None
    replaced: bool = False
    ice_restarted: bool = False
    new_session: bool = False


@dataclass(frozen=True)
class ReconnectStats:
    """Counters of a :class:`Reconnector` (part of ``SessionStats``).

    ``outages``: losses noticed; ``reconnects``: of those, recovered; ``attempts``: ICE
    restarts and new connections tried; ``ice_restarts``: of the reconnects, those an ICE
    restart brought back; ``outage_seconds``: media time lost in total (the current outage
    included); ``reconnecting``: an outage is under way.
    """

    reconnecting: bool = False
    outages: int = 0
    reconnects: int = 0
    attempts: int = 0
    ice_restarts: int = 0
    outage_seconds: float = 0.0
    last_outage_seconds: float | None = None
    last_error: str | None = None


OutageHandler = Callable[[Outage], None]


class Reconnector:
    """Keeps a :class:`MediaConnection` up; see the module docstring.

    ``new_connection()`` builds an unconnected connection (its ``on_receiver`` hook attaches
    the receive pipelines, so media continues where the last one stopped). ``last_activity()``
    is ``time.monotonic()`` of the last RTP packet or sender report of any track (None before
    any).
    ``on_reconnecting`` / ``on_reconnected`` get the :class:`Outage`; ``on_failed`` the final
    error (after it nothing is retried; the last connection stays open until :meth:`close`).
    ``renew()``: makes a new service session that ``new_connection()`` connects to next
    (used on WHEP 404 when the policy asks for it; its 5xx, 429 and transport errors count
    as a failed attempt, other errors are final).
    """

    def __init__(
        self,
        new_connection: Callable[[], MediaConnection],
        *,
        policy: ReconnectPolicy,
        last_activity: LastActivity,
        on_reconnecting: OutageHandler | None = None,
        on_reconnected: OutageHandler | None = None,
        on_failed: Callable[[AvatarRTCError], None] | None = None,
        request_keyframe: Callable[[], None] | None = None,
        renew: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._new_connection = new_connection
        self._watchdog = MediaWatchdog(
            last_activity,
            timeout=policy.media_timeout if policy.enabled else None,
            clock=clock,
        )
        self._on_reconnecting = on_reconnecting
        self._on_reconnected = on_reconnected
        self._on_failed = on_failed
        self._request_keyframe = request_keyframe
        self._renew = renew
        self._clock = clock
        self._rng = rng or random.Random()
        self._connection: MediaConnection | None = None
        self._first: MediaConnection | None = None
        self._watched = False  # the current connection is up and watched
        self._monitor = ReachabilityMonitor([], interval=policy.probe_interval)
        self._task: asyncio.Task[None] | None = None
        self._outage: Outage | None = None
        self._stats = ReconnectStats()
        self._ice_restart = policy.ice_restart  # off once a server refused one

    # --- public API -----------------------------------------------------------------

    @property
    def connection(self) -> MediaConnection | None:
        """The current connection (the latest one tried, during an attempt)."""
        return self._connection

    @property
    def first_connection(self) -> MediaConnection | None:
        """The connection :meth:`connect` made (its timings are the session's start-up)."""
        return self._first

    @property
    def watchdog(self) -> MediaWatchdog:
        return self._watchdog

    def stats(self) -> ReconnectStats:
        outage = self._outage
        if outage is None:
            return self._stats
        ongoing = max(0.0, self._clock() - outage.started)
        return replace(self._stats, outage_seconds=self._stats.outage_seconds + ongoing)

    async def connect(self) -> MediaConnection:
        """Connect (errors raise as from ``MediaConnection.connect``), then watch the media."""
        if self._connection is not None:
            raise RuntimeError("Reconnector.connect() called twice")
        connection = self._first = self._adopt(self._new_connection())
        await connection.connect()
        self._watch(connection)
        self._task = asyncio.create_task(self._supervise(), name="avatar-rtc-reconnector")
        return connection

    def stop(self) -> None:
        """Stop watching and reconnecting (e.g. the service session is gone); no event."""
        self._watched = False
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        """Stop reconnecting and close the current connection (WHEP DELETE). Idempotent."""
        self.stop()
        task, self._task = self._task, None
        await cancel_and_wait(task)  # stop() cancelled it already: a no-op second cancel
        await self._monitor.stop()
        if self._connection is not None:
            await self._connection.close()

    # --- watching -------------------------------------------------------------------

    def _adopt(self, connection: MediaConnection) -> MediaConnection:
        self._connection = connection
        connection.on_state_change = functools.partial(self._on_state, connection)
        return connection

    def _watch(self, connection: MediaConnection) -> None:
        self._watched = True
        self._watchdog.rearm()
        targets = probe_targets(connection.whep_url, connection.selected_pair())
        self._monitor = ReachabilityMonitor(targets, interval=self.policy.probe_interval)

    def _on_state(self, connection: MediaConnection, state: ConnectionState) -> None:
        if connection is self._connection and self._watched and state in ("failed", "closed"):
            logger.info("media connection %s", state)
            self._watchdog.mark_dead(f"media connection {state}")

    async def _supervise(self) -> None:
        try:
            while True:
                # Probes that do not answer while all is well would hold reconnecting back.
                await self._monitor.validate()
                reason = await self._watchdog.lost()
                if not self.policy.enabled:
                    raise MediaLostError(f"media lost ({reason}); reconnecting is off")
                await self._recover(reason)
        except asyncio.CancelledError:
            raise
        except AvatarRTCError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must still end in a typed error, not a silent task
            logger.exception("reconnecting failed")
            self._fail(MediaLostError(f"reconnecting failed: {exc}"))

    def _fail(self, error: AvatarRTCError) -> None:
        self._watched = False
        outage = self._outage
        if outage is not None:
            self._outage = None
            lost = max(0.0, self._clock() - outage.started)
            self._stats = replace(
                self._stats,
                reconnecting=False,
                outage_seconds=self._stats.outage_seconds + lost,
                last_error=str(error),
            )
        logger.error("media lost for good: %s", error)
        if self._on_failed is not None:
            try:
                self._on_failed(error)
            except Exception:
                logger.exception("reconnect failure handler failed")

    # --- recovering -----------------------------------------------------------------

    async def _recover(self, reason: str) -> None:
        last_media = self._watchdog.last_media
        started = self._clock() if last_media is None else last_media
        outage = self._outage = Outage(reason, started)
        self._stats = replace(self._stats, reconnecting=True, outages=self._stats.outages + 1)
        logger.warning("media lost (%s): reconnecting", reason)
        _call(self._on_reconnecting, outage)
        monitor = self._monitor  # the next connection brings its own
        monitor.start()
        last_error: BaseException | None = None
        refused = 0  # attempts refused in a row by the WHEP server's host
        try:
            for attempt in range(self.policy.max_attempts):
                # After a refusal the sender may be restarting: retry soon, not after backoff.
                slot = self.policy.delay(0 if refused else attempt, self._rng)
                waited = await self._wait(monitor, slot)
                if waited == "media":
                    self._recovered(replaced=False)
                    return
                if waited == "down" and not monitor.udp_blocked:
                    logger.info("reconnect slot %d: the network is still down", attempt + 1)
                    continue
                if waited == "down":
                    logger.info(
                        "reconnect slot %d: UDP gets no answer, TCP does: a new path (TURN "
                        "over TCP/TLS)",
                        attempt + 1,
                    )
                if (
                    waited == "back"
                    and self._watched
                    and self._watchdog.dead is None
                    and await self._watchdog.media_within(_COMEBACK_GRACE)
                ):
                    self._recovered(replaced=False)
                    return
                try:
                    replaced = await self._attempt()
                except WhepNotFoundError:
                    raise  # the service session is gone (and not renewed): final
                except (ConnectError, WhepError, TransportError, *_RENEW_RETRIED) as exc:
                    last_error = exc
                    self._stats = replace(self._stats, last_error=str(exc))
                    logger.info("reconnect attempt %d failed: %s", attempt + 1, exc)
                    refused = refused + 1 if await self._refused(exc) else 0
                    if refused >= self.policy.refused_attempts:
                        raise self._unreachable(reason, refused, started) from exc
                    continue
                self._recovered(replaced=replaced)
                return
        finally:
            await monitor.stop()
        lost = self._clock() - started
        detail = f"; last error: {last_error}" if last_error is not None else ""
        tried = outage.attempts if self._outage is None else self._outage.attempts
        raise MediaLostError(
            f"media lost ({reason}) and not back after {self.policy.max_attempts} backoff slots "
            f"({tried} connection attempts; {lost:.1f} s){detail}"
        )

    async def _wait(
        self, monitor: ReachabilityMonitor, delay: float
    ) -> Literal["media", "back", "down", "up"]:
        """Wait one backoff slot: until media returns on the current connection ("media"),
        the network comes back ("back") or the slot ends ("down"/"up": the latest verdict;
        the slot lasts until there is one)."""
        deadline = self._clock() + delay
        mark = self._watchdog.mark()
        while True:
            # Media on a connection marked dead (closed, failed, its service session gone)
            # is no recovery: the mark stays, and the watchdog would report the loss again
            # at once (a keep-alive 404 while media flowed: 186 reconnects in 10 s).
            if self._watchdog.dead is None and self._watchdog.media_since(mark):
                return "media"
            if monitor.came_back():
                return "back"
            if self._clock() >= deadline and monitor.down is not None:
                return "down" if monitor.down else "up"
            await asyncio.sleep(_TICK)

    async def _attempt(self) -> bool:
        """An ICE restart where it can be tried, else one new connection (returns True); on
        WHEP 404, a new service session first if asked for."""
        if await self._restart_ice():
            if self._outage is not None:
                self._outage = replace(self._outage, ice_restarted=True)
            self._stats = replace(self._stats, ice_restarts=self._stats.ice_restarts + 1)
            return False
        try:
            await self._replace()
            return True
        except WhepNotFoundError as exc:
            if self._renew is None or not self.policy.new_session_on_not_found:
                exc.add_note("(while reconnecting: the service session is gone)")
                raise
            logger.warning("the service session is gone (WHEP 404): creating a new one")
        await self._renew()
        if self._outage is not None:
            self._outage = replace(self._outage, new_session=True)
        await self._replace()
        return True

    async def _restart_ice(self) -> bool:
        """An ICE restart of the current connection (WHEP PATCH), if it can be tried; True when
        media came back on it. Its failures are logged: a new connection comes next."""
        connection = self._connection
        if not self._ice_restart or connection is None or not connection.can_restart_ice:
            return False
        self._count_attempt()
        try:
            async with asyncio.timeout(self.policy.attempt_timeout):
                if not await connection.restart_ice():
                    self._ice_restart = False
                    logger.info("the WHEP server does not restart ICE: new connections only")
                    return False
                if not await self._watchdog.media_within(self.policy.media_timeout):
                    raise NoMediaError(
                        f"ICE restarted, but no media within {self.policy.media_timeout:.1f} s"
                    )
        except (TimeoutError, ConnectError, WhepError, TransportError) as exc:
            reason = str(exc) or f"not done within {self.policy.attempt_timeout:.1f} s"
            self._stats = replace(self._stats, last_error=reason)
            logger.info("ICE restart failed (%s): a new connection next", reason)
            return False
        self._watch(connection)
        return True

    async def _refused(self, error: BaseException) -> bool:
        """Did the attempt fail because the WHEP server's host refuses connections (RST)?"""
        connection = self._connection
        if not isinstance(error, TransportError) or connection is None:
            return False
        targets = probe_targets(connection.whep_url, None)
        return bool(targets) and await verdict(targets[0], self._monitor.timeout) == "refused"

    def _unreachable(self, reason: str, refused: int, started: float) -> ServiceUnreachableError:
        connection = self._connection
        url = urlsplit(connection.whep_url if connection is not None else "")
        origin = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"  # no credentials
        lost = self._clock() - started
        return ServiceUnreachableError(
            f"media lost ({reason}) and the WHEP server {origin} refuses connections: "
            f"{refused} attempts refused in a row ({lost:.1f} s after the last media); "
            "the network works, the sender is gone",
            origin=origin,
        )

    async def _replace(self) -> None:
        """A new peer connection and WHEP resource; the old resource is DELETEd first."""
        old = self._connection
        self._watched = False
        new = self._adopt(self._new_connection())
        new.connect_timeout = min(new.connect_timeout, self.policy.attempt_timeout)
        self._count_attempt()
        if old is not None:
            with contextlib.suppress(TimeoutError):  # close() goes on in the background
                async with asyncio.timeout(self.policy.attempt_timeout / 2):
                    await old.close(pc_wait=0.0)  # (the new POST needs only the DELETE done)
        try:
            async with asyncio.timeout(self.policy.attempt_timeout) as deadline:
                await new.connect()
                self._watchdog.rearm()
                if not await self._watchdog.media_within(self.policy.media_timeout):
                    raise NoMediaError(
                        f"connected, but no media within {self.policy.media_timeout:.1f} s"
                    )
        except TimeoutError:
            await new.close()
            if deadline.expired():
                raise ConnectTimeoutError(
                    f"reconnect attempt not done within {self.policy.attempt_timeout:.1f} s"
                ) from None
            raise
        except NoMediaError:
            await new.close()
            raise
        self._watch(new)

    def _count_attempt(self) -> None:
        self._stats = replace(self._stats, attempts=self._stats.attempts + 1)
        if self._outage is not None:
            self._outage = replace(self._outage, attempts=self._outage.attempts + 1)

    def _recovered(self, *, replaced: bool) -> None:
        outage = self._outage
        assert outage is not None
        last_media = self._watchdog.last_media
        back = self._clock() if last_media is None else last_media
        seconds = max(0.0, back - outage.started)
        done = replace(outage, seconds=seconds, replaced=replaced)
        self._outage = None
        self._watched = True
        self._stats = replace(
            self._stats,
            reconnecting=False,
            reconnects=self._stats.reconnects + 1,
            outage_seconds=self._stats.outage_seconds + seconds,
            last_outage_seconds=seconds,
        )
        how = "on a new connection" if replaced else "on the same connection"
        if done.ice_restarted:
            how += " (ICE restarted)"
        logger.warning("media back after %.1f s %s (%d attempt(s))", seconds, how, done.attempts)
        if self._request_keyframe is not None:
            self._request_keyframe()  # the decoder and a recording restart at a keyframe
        _call(self._on_reconnected, done)


def _call(handler: OutageHandler | None, outage: Outage) -> None:
    if handler is None:
        return
    try:
        handler(outage)
    except Exception:
        logger.exception("reconnect event handler failed")
