"""MediaWatchdog: notices that media stopped arriving.

aioice declares a path dead only after ~30 s of failed consent checks, and aiortc's
connection state ignores a DTLS close from the peer: too slow to keep a recording alive. The
watchdog reads the *time of the last activity* (an RTP packet or an RTCP sender report of any
track: a sender that pauses its RTP but still sends reports is alive) and reports a loss when
there has been none for ``timeout`` seconds, or at once when the connection says it failed or
closed (:meth:`mark_dead`).

The timeout counts only once media flowed on the current connection (:meth:`rearm` after every
(re)connect): a sender slow to start is the connect logic's business, not a loss.

:meth:`lost` sleeps until the earliest moment a loss can be due (the timeout after the last
activity; :meth:`mark_dead` wakes it): one wake-up per timeout while media flows, where polling
every 50 ms cost each session 20 event-loop wake-ups a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["LastActivity", "MediaWatchdog"]

_TICK = 0.05  # polling period (s) of media_within(): reconnects only

LastActivity = Callable[[], float | None]  # clock() of the last activity, None before any


class MediaWatchdog:
    """Watches ``last_activity()`` (see the module doc); it must use the same clock as
    ``clock`` (``time.monotonic``, as the receive pipelines do).

    ``timeout=None``: only :meth:`mark_dead` reports a loss (no-media detection off).
    """

    def __init__(
        self,
        last_activity: LastActivity,
        *,
        timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.timeout = timeout
        self._last_activity = last_activity
        self._clock = clock
        self._armed = clock()  # media counts from here (rearm)
        self._dead: str | None = None
        self._wake: asyncio.Future[None] | None = None  # what lost() sleeps on

    @property
    def last_media(self) -> float | None:
        """``clock()`` of the last activity (``None`` before any)."""
        return self._last_activity()

    @property
    def dead(self) -> str | None:
        """Why the current connection is known dead (``None`` while it may still carry media)."""
        return self._dead

    def rearm(self) -> None:
        """A new connection is up: forget its predecessor's death; the timeout waits for media."""
        self._dead = None
        self._armed = self._clock()

    def mark_dead(self, reason: str) -> None:
        """The connection failed or closed: report a loss at once (on the event loop's thread)."""
        if self._dead is None:
            self._dead = reason
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _flowed(self) -> float | None:
        """The last activity if media flowed since :meth:`rearm`, else ``None``."""
        last = self._last_activity()
        return last if last is not None and last > self._armed else None

    def silence(self) -> float:
        """Seconds since the last activity (0 before any)."""
        last = self._last_activity()
        return 0.0 if last is None else max(0.0, self._clock() - last)

    def loss(self) -> str | None:
        """Why media is lost now, or ``None`` while it flows (or has not started)."""
        if self._dead is not None:
            return self._dead
        last = self._flowed()
        if self.timeout is not None and last is not None:
            quiet = self._clock() - last
            if quiet >= self.timeout:
                return f"no media for {quiet:.1f} s"
        return None

    async def lost(self) -> str:
        """Wait for a loss; returns its reason."""
        while True:
            reason = self.loss()
            if reason is not None:
                return reason
            await self._pause(self._until_due())

    def _until_due(self) -> float | None:
        """Seconds until a loss can be due at the earliest (``None``: only by mark_dead)."""
        if self.timeout is None:
            return None
        last = self._flowed()
        if last is None:  # media has yet to start: the silence cannot end sooner
            return self.timeout
        return max(0.0, last + self.timeout - self._clock())

    async def _pause(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (``None``: without end) or until :meth:`mark_dead`."""
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(wake, seconds)
        except TimeoutError:
            pass
        finally:
            self._wake = None

    def mark(self) -> float | None:
        """The last activity now, for :meth:`media_since`."""
        return self._last_activity()

    def media_since(self, mark: float | None) -> bool:
        """Did media arrive since ``mark`` (a value of :meth:`mark`)?"""
        last = self._last_activity()
        return last is not None and (mark is None or last > mark)

    async def media_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for media; True as soon as some arrives."""
        mark = self.mark()
        deadline = self._clock() + seconds
        while not self.media_since(mark):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(_TICK, remaining))
        return True
