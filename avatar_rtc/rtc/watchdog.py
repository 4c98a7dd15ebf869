"""MediaWatchdog: notices that media stopped arriving.

aioice declares a path dead only after ~30 s of failed consent checks, and aiortc's
connection state ignores a DTLS close from the peer: too slow to keep a recording alive. The
watchdog polls an *activity counter* (RTP packets + RTCP sender reports of every track: a
sender that pauses its RTP but still sends reports is alive) and reports a loss when it has not
moved for ``timeout`` seconds, or at once when the connection says it failed or closed
(:meth:`mark_dead`).

The timeout counts only once media flowed on the current connection (:meth:`rearm` after every
(re)connect): a sender slow to start is the connect logic's business, not a loss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["MediaWatchdog"]

_TICK = 0.05  # polling period (s): well below any timeout worth configuring


class MediaWatchdog:
    """Watches ``activity()`` (a counter that grows while media arrives); see the module doc.

    ``timeout=None``: only :meth:`mark_dead` reports a loss (no-media detection off).
    """

    def __init__(
        self,
        activity: Callable[[], int],
        *,
        timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.timeout = timeout
        self._activity = activity
        self._clock = clock
        self._count = activity()
        self._last_media: float | None = None
        self._seen = False  # media flowed since the last rearm()
        self._dead: str | None = None

    @property
    def last_media(self) -> float | None:
        """``clock()`` when activity was last seen (``None`` before any)."""
        return self._last_media

    @property
    def dead(self) -> str | None:
        """Why the current connection is known dead (``None`` while it may still carry media)."""
        return self._dead

    def rearm(self) -> None:
        """A new connection is up: forget its predecessor's death; the timeout waits for media."""
        self._dead = None
        self._seen = False
        self._count = self._activity()

    def mark_dead(self, reason: str) -> None:
        """The connection failed or closed: report a loss at once."""
        if self._dead is None:
            self._dead = reason

    def poll(self) -> int:
        """Sample the counter; returns it (``last_media`` moves when it changed)."""
        count = self._activity()
        if count != self._count:
            self._count = count
            self._last_media = self._clock()
            self._seen = True
        return count

    def silence(self) -> float:
        """Seconds since the last activity (0 before any)."""
        self.poll()
        return 0.0 if self._last_media is None else self._clock() - self._last_media

    def loss(self) -> str | None:
        """Why media is lost now, or ``None`` while it flows (or has not started)."""
        self.poll()
        if self._dead is not None:
            return self._dead
        if self.timeout is not None and self._seen and self._last_media is not None:
            quiet = self._clock() - self._last_media
            if quiet >= self.timeout:
                return f"no media for {quiet:.1f} s"
        return None

    async def lost(self) -> str:
        """Wait for a loss; returns its reason (polled: a counter has nothing to await)."""
        while True:
            reason = self.loss()
            if reason is not None:
                return reason
            await asyncio.sleep(_TICK)

    def mark(self) -> int:
        """The counter now, for :meth:`media_since`."""
        return self.poll()

    def media_since(self, mark: int) -> bool:
        """Did media arrive since ``mark`` (a value of :meth:`mark`)?"""
        return self.poll() != mark

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
