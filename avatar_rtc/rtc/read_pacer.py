"""ReadPacer: media sockets read every ``interval`` seconds while media flows, not at each datagram.

Why: a receiving session's CPU is mostly the wake-ups, not the packets. Measured on the 2-core
reference machine: a wake-up of the event loop costs ~450 µs of thread CPU (caches refilled
after the sleep) for ~41 µs of Python a packet, and a sender's 20 ms ticks wake a receiver ~55
times a second a session. Reading every 100 ms instead: a copy-mode recording 2.7 -> 1.3 % of
a core (one session) and 1.5 -> 0.8 % each (8 sessions), a session decoding to numpy 7.0 ->
3.9 % and 4.9 -> 3.2 % (``scripts/bench_scale.py``, medians of 3 runs, 2026-12-07).

How: :class:`~.datagram_batch.DatagramBatch` stops the event loop watching a socket it has just
drained (``pause_reading``) and hands it here with ``hold``. One timer per event loop and
interval, shared by every session on that loop, drains every held socket at each tick. A
socket that had nothing queued at a tick is watched again (``resume``): an idle or silent path
still wakes the loop at its first datagram, so the end of an outage is seen at once.

Cost: up to ``interval`` of latency on every packet, and arrival times are read times (jitter
figures include the interval). A held socket's packets wait in its kernel buffer: it is grown
(``datagram_batch.PACED_RCVBUF``, up to the system's ``net.core.rmem_max``) so a keyframe
burst of a high-rate stream fits in an interval. For recordings, frames fed to a model in
batches, and fleets; not for interactive use or latency measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable

__all__ = ["MAX_READ_INTERVAL", "ReadPacer", "pacer_for"]

logger = logging.getLogger(__name__)

# Seconds. Below datagram_batch.PATH_SILENCE (0.25: a shorter outage between two ticks would go
# untold, and the silence probe would probe while media flows) and far below aioice's 0.5 s
# consent check timeout (its response waits in the socket for up to an interval).
MAX_READ_INTERVAL = 0.2

# drain() -> datagrams read (0: nothing was queued; None: the socket is gone, forget it)
Drain = Callable[[], "int | None"]
Resume = Callable[[], None]

_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, ReadPacer]] = (
    weakref.WeakKeyDictionary()
)


def pacer_for(interval: float) -> ReadPacer:
    """The running loop's pacer of ``interval`` seconds (made on first use)."""
    loop = asyncio.get_running_loop()
    pacers = _PACERS.setdefault(loop, {})
    pacer = pacers.get(interval)
    if pacer is None:
        pacer = pacers[interval] = ReadPacer(loop, interval)
    return pacer


class ReadPacer:
    """Drains the sockets held on one event loop every ``interval`` seconds (module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        if not 0 < interval <= MAX_READ_INTERVAL:
            raise ValueError(f"interval {interval!r}: above 0, at most {MAX_READ_INTERVAL} s")
        self.interval = interval
        self._loop_ref = weakref.ref(loop)  # (the registry is weak on the loop: not kept alive)
        self._held: dict[object, tuple[Drain, Resume]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.ticks = 0  # (tests, diagnostics)

    @property
    def held(self) -> int:
        """How many sockets wait for the next tick."""
        return len(self._held)

    def hold(self, key: object, drain: Drain, resume: Resume) -> None:
        """The caller has stopped the loop watching ``key``'s socket: ``drain`` it at each tick
        until a tick finds nothing queued, then ``resume`` watching it."""
        self._held[key] = (drain, resume)
        loop = self._loop_ref()
        if self._timer is None and loop is not None:
            self._due = loop.time() + self.interval
            self._timer = loop.call_at(self._due, self._tick)

    def _read(self, key: object, drain: Drain, resume: Resume) -> None:
        """One held socket at a tick; nothing it raises stops the timer (every socket's)."""
        try:
            read = drain()
            if read:
                return  # held on: more may come by the next tick
            still_held = self._held.pop(key, None) is not None  # (a drain may release its own)
            if still_held and read == 0:  # empty: the loop watches it again (None: it is gone)
                resume()
        except Exception:
            logger.exception("paced read failed")
            if self._held.pop(key, None) is not None:
                with contextlib.suppress(Exception):
                    resume()  # the loop watches it again: its datagrams are not left unread

    def release(self, key: object) -> bool:
        """Forget ``key`` without resuming it (its socket is closing, or its owner resumes it
        itself); True if it was held."""
        held = self._held.pop(key, None) is not None
        if not self._held and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return held

    def _tick(self) -> None:
        self._timer = None
        self.ticks += 1
        for key, (drain, resume) in list(self._held.items()):
            if key in self._held:  # (not released earlier in this tick)
                self._read(key, drain, resume)
        loop = self._loop_ref()
        if self._held and self._timer is None and loop is not None:  # (a hold may have set one)
            # On the tick's own grid (a busy loop may have run late: no catching up in bursts)
            now = loop.time()
            self._due = max(self._due + self.interval, now + self.interval / 2)
            self._timer = loop.call_at(self._due, self._tick)
