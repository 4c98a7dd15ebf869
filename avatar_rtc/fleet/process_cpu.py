"""What the pool's worker processes really use of the CPU, read from ``/proc``.

Admission books each job at its kind's cost (:mod:`.admission`), measured on the reference
machine; on a slower or busier machine, or with a heavier stream, a session costs more.
:class:`CpuMeter` measures each worker (user + system time of all its threads) over the last
``window`` seconds, so admission can book what a process uses when that is more than its
jobs' costs, as LiveKit Egress books a running egress at the greater of its declared and its
measured CPU.

Where ``/proc/PID/stat`` cannot be read, :func:`cpu_seconds` answers None and admission books
the costs alone.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable

__all__ = ["CpuMeter", "cpu_seconds"]

WINDOW = 3.0  # seconds measured: a keyframe's decode is a blip, a new session's load is not

_TICK = os.sysconf("SC_CLK_TCK")  # /proc's unit of CPU time


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (every thread); None when ``/proc`` has
    no such process (it ended, or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # After the command name (in parentheses, may hold spaces): utime is field 14.
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """Cores each process used over the last ``window`` seconds, from its samples."""

    def __init__(
        self,
        window: float = WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[int], float | None] = cpu_seconds,
    ) -> None:
        self.window = window
        self._clock = clock
        self._read = read
        self._samples: dict[int, collections.deque[tuple[float, float]]] = {}

    def sample(self, pid: int) -> float | None:
        """Take a sample of ``pid``; the cores it used since its oldest sample in the window
        (None until there are two, or when it cannot be read)."""
        cpu = self._read(pid)
        if cpu is None:
            self._samples.pop(pid, None)
            return None
        now = self._clock()
        samples = self._samples.setdefault(pid, collections.deque())
        samples.append((now, cpu))
        # Keep one sample at or before the window's start: the span is then the full window.
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()
        then, before = samples[0]
        if now <= then:
            return None
        return max(0.0, cpu - before) / (now - then)
