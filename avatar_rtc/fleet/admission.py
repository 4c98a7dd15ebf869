"""Admission by measured cost: a job starts only where its CPU fits under the limit.

Each job kind has a CPU cost per session, in cores (:data:`SESSION_COST`), measured with
``scripts/bench_scale.py``: receiver CPU per session (all processes of the pool) of a 512x512
25 fps H264 (~1 Mbit/s) + Opus stream from the emulator's fan-out load generator, medians of 3
runs, on this project's 2-core reference machine, shared and noisy. The cost is the largest
figure measured at 8 or more sessions, rounded up (decode 0.021-0.040, copy-record
0.007-0.019, encode-record 0.109-0.115 cores per session, 2026-12-03 and 2026-12-05): what
each further session adds to a busy process. A process's first session costs more, its fixed
share (:data:`PROCESS_COST`): the pool's processes carry many sessions each and pay it once,
within the headroom the limit keeps (and a process with nothing running takes any job anyway);
with these, 2 cores admit 40 decode or 80 copy-record sessions at once, which the bench
measured clean up to 64 and 128 (plain aiortc: 32). Copy-record jobs whose sockets are read
paced (``read_interval``, the fleet command's ``--job record``) cost less,
:data:`PACED_RECORD_COST`: :func:`costs_for` gives them to an engine. A Ray task is a
process of its own and books the fixed share with every job (:mod:`.ray_engine`). ``qa`` is
copy-record plus the file analysis, 0.05 core-seconds per second of media, spread over the
session. They are the defaults of one place: the pool and the Ray engine read them; a caller
passes its own (``costs=``) for other streams or machines.

:class:`Admission` books costs against processes of one core each: a job goes to the least
loaded process whose load plus the job's cost stays within ``limit`` (80 % by default, so a
core keeps headroom for bursts: keyframes, start-up, the QA analysis); a process with
nothing running takes any one job, even one costing more than the limit.

A process's load is its jobs' costs or, when more, what it was measured to use
(:meth:`Admission.measured`, which :class:`~.pool.SessionPool` feeds every second from
:mod:`.process_cpu`) plus the costs of the jobs it took in the last :data:`HOLD` seconds
(still connecting: not in the measurement yet). A job that ended stays in the measurement
for its window (:data:`~.process_cpu.WINDOW`, 3 s): the measurement is split between the
running jobs and the ended ones by cost x seconds run within the window, and only the running
jobs' part is booked (else a queued job waits for the measurement to forget the ended ones).
The costs are a machine's figures; on a slower or busier day, or for a heavier stream, a
session costs more than they say, and the measurement books that (on the reference machine,
2026-12-06: copy-record 0.019-0.024 cores per session at 4-16 sessions, over its 0.02). The
Ray engine asks Ray for the costs' CPUs: Ray's scheduler places its tasks by them, unmeasured.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import ConfigurationError
from .jobs import RECORD_READ_INTERVAL, FleetJob, JobKind
from .process_cpu import WINDOW

__all__ = [
    "DEFAULT_LIMIT",
    "PACED_RECORD_COST",
    "PROCESS_COST",
    "SESSION_COST",
    "Admission",
    "Booking",
    "Load",
    "costs_for",
    "with_costs",
]

DEFAULT_LIMIT = 0.8

# Cores per session, by job kind (see the module docstring for how they were measured).
SESSION_COST: Mapping[JobKind, float] = {
    "decode": 0.04,
    "copy-record": 0.02,
    "encode-record": 0.12,
    "qa": 0.07,
}

# A copy-record session whose sockets are read every RECORD_READ_INTERVAL or more (the fleet
# command's --job record; rtc/read_pacer.py) instead of at each packet. Measured 0.0062-0.0088
# cores at 8 to 160 sessions (bench_scale.py --read-interval 0.1, 2026-12-07), but 0.01 would
# admit 160 on 2 cores, which the bench held clean in 1 run of 3 (a second without frames in
# the others); this admits 128, clean in 2 of 3 (64: 3 of 3), with the load generator on the
# same cores. SESSION_COST's copy-record figure is for reads at each packet.
PACED_RECORD_COST = 0.0125

# A worker process's fixed share, in cores: what one session alone costs beyond a further one
# (one decode session 4.1-5.9 % of a core against 2.1-3.3 % at 8 or more; copy-record 2.0-2.6
# against 0.7-1.3), rounded up.
PROCESS_COST = 0.03

# Seconds a new job's cost is booked on top of its process's measured use: a session connects
# and gets its first frames within a few seconds, and the measurement spans 3 more.
HOLD = 10.0


def costs_for(jobs: Iterable[FleetJob]) -> dict[JobKind, float]:
    """The costs these jobs need besides :data:`SESSION_COST`, for an engine's ``costs=``:
    copy-record at :data:`PACED_RECORD_COST` when every copy-record job reads paced (one
    unpaced job, and the kind keeps its cost: costs go by kind)."""
    intervals = [job.options.read_interval for job in jobs if job.kind == "copy-record"]
    if intervals and min(intervals) >= RECORD_READ_INTERVAL:
        return {"copy-record": PACED_RECORD_COST}
    return {}


@dataclass(frozen=True)
class Load:
    """Load per process (cores: what admission goes by), and what is queued for admission.
    ``measured``: what each process was measured to use (None: not measured), when known."""

    per_process: tuple[float, ...]
    running: int
    queued: int
    limit: float
    measured: tuple[float | None, ...] = ()

    @property
    def fraction(self) -> float:
        """Load over all processes' capacity (1.0: every core fully booked)."""
        return sum(self.per_process) / len(self.per_process) if self.per_process else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "per_process": [round(c, 3) for c in self.per_process],
            "fraction": round(self.fraction, 3),
            "running": self.running,
            "queued": self.queued,
            "limit": self.limit,
            "measured": [None if c is None else round(c, 3) for c in self.measured],
        }


@dataclass(frozen=True, eq=False)
class Booking:
    """A job's place: its ``process``, its ``cost`` and when it was ``taken``."""

    process: int
    cost: float
    taken: float


def with_costs(costs: Mapping[JobKind, float] | None) -> dict[JobKind, float]:
    """:data:`SESSION_COST` with the caller's ``costs`` in place; ``ConfigurationError`` for a
    kind that is none (a typo was ignored, its default kept) or a cost that is not a finite
    number >= 0 (a negative one booked negative load: admission never stopped)."""
    merged: dict[JobKind, float] = dict(SESSION_COST)
    for kind, cost in (costs or {}).items():
        if kind not in SESSION_COST:
            raise ConfigurationError(f"cost of {kind!r}: job kinds are {', '.join(SESSION_COST)}")
        if not 0 <= cost < math.inf:  # (NaN too)
            raise ConfigurationError(f"cost of {kind!r} must be a finite number >= 0, got {cost}")
        merged[kind] = cost
    return merged


class Admission:
    """Cost bookkeeping over ``processes`` processes of one core each."""

    def __init__(
        self,
        processes: int,
        *,
        limit: float = DEFAULT_LIMIT,
        costs: Mapping[JobKind, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if processes < 1:
            raise ConfigurationError("processes must be >= 1")
        if not 0 < limit <= 1:
            raise ConfigurationError("limit must be within (0, 1]")
        self.limit = limit
        self.costs: Mapping[JobKind, float] = with_costs(costs)
        self._clock = clock
        self._running: list[list[Booking]] = [[] for _ in range(processes)]
        self._measured: list[float | None] = [None] * processes
        self._measured_at = [float("-inf")] * processes
        # (booking, when it ended) of each process's jobs that ended lately
        self._ended: list[collections.deque[tuple[Booking, float]]] = [
            collections.deque() for _ in range(processes)
        ]
        self._retired: set[int] = set()  # processes that are gone

    def cost(self, kind: JobKind) -> float:
        return self.costs[kind]

    def place(self, kind: JobKind) -> Booking | None:
        """Book a ``kind`` job on a process; None when none has room."""
        cost = self.cost(kind)
        now = self._clock()
        loads = [self._load(p, now) for p in range(len(self._running))]
        # Least loaded first; among equals, fewest jobs (jobs of no cost spread out too).
        live = [p for p in range(len(loads)) if p not in self._retired]
        order = sorted(live, key=lambda p: (loads[p], len(self._running[p])))
        for process in order:
            if not self._running[process] or loads[process] + cost <= self.limit + 1e-9:
                booking = Booking(process, cost, now)
                self._running[process].append(booking)
                return booking
        return None

    def retire(self, process: int) -> None:
        """``process`` is gone: no job is placed on it any more (it would look idle)."""
        self._retired.add(process)

    def measured(self, process: int, cores: float | None) -> None:
        """What ``process`` used lately, in cores (None: not known)."""
        self._measured[process] = cores
        self._measured_at[process] = self._clock()

    def release(self, booking: Booking, *, ran: bool = True) -> None:
        """``booking``'s job ended (``ran=False``: it never started)."""
        self._running[booking.process].remove(booking)
        if ran:
            self._ended[booking.process].append((booking, self._clock()))

    def load(self, queued: int = 0) -> Load:
        now = self._clock()
        loads = tuple(self._load(p, now) for p in range(len(self._running)))
        running = sum(len(jobs) for jobs in self._running)
        return Load(loads, running, queued, self.limit, tuple(self._measured))

    def _load(self, process: int, now: float) -> float:
        """The jobs' costs or, when more, the running jobs' part of the measured use plus
        the costs of the jobs still held."""
        jobs, measured = self._running[process], self._measured[process]
        booked = sum(job.cost for job in jobs)
        # The measure spans the last WINDOW seconds at least: what an ended job ran of those.
        at = self._measured_at[process]
        since = at - WINDOW
        ended = self._ended[process]
        while ended and (ended[0][1] <= since or ended[0][1] <= now - HOLD):
            ended.popleft()  # (by HOLD too: a pool that measures nothing keeps none)
        if measured is None or not jobs:
            return booked
        held = sum(job.cost for job in jobs if job.taken > now - HOLD)
        gone = sum(
            job.cost * max(0.0, min(end, at) - max(job.taken, since)) / WINDOW for job, end in ended
        )
        # The measure split by cost x seconds between the running jobs and the ended ones.
        # A held job counts in both parts: connecting costs more than its cost says (booking
        # held jobs only at their costs let too many start: sessions fell under 24 fps).
        if gone > 0:
            measured *= booked / (booked + gone)
        return max(booked, measured + held)
