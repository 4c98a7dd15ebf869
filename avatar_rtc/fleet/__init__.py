"""Many sessions at once: in worker processes on this machine, or as Ray tasks on a cluster.

- :class:`FleetJob` / :class:`JobResult` (:mod:`.jobs`): one session's job (decode,
  copy-record, encode-record, qa) and what it measured; plain data any engine ships.
- :class:`SessionPool` (:mod:`.pool`): the local engine, one worker process per core with its
  own event loop; frames to the caller through shared memory (:mod:`.frames`).
- :class:`RayEngine` (:mod:`.ray_engine`): the same jobs as Ray tasks (the ``ray`` extra).
- :mod:`.admission`: each job kind's measured CPU cost; jobs start while the booked cost stays
  under the limit (80 %).
- :func:`aggregate` (:mod:`.aggregate`): P50/P95/P99 across sessions, JSON and PNG.

``avatar-rtc fleet`` is the command line of it. Importing it loads PyAV and numpy (the shared
frames, the job options), not aiortc: the WebRTC stack loads in the processes that run
sessions.
"""

from .admission import (
    DEFAULT_LIMIT,
    PACED_RECORD_COST,
    PROCESS_COST,
    SESSION_COST,
    Admission,
    Booking,
    Load,
    costs_for,
)
from .aggregate import FleetReport, aggregate, plot_fleet
from .engine import Engine
from .errors import EngineStateError
from .frames import SharedFrame
from .jobs import (
    DEFAULT_SAY,
    JOB_KINDS,
    RECORD_READ_INTERVAL,
    FleetJob,
    JobKind,
    JobResult,
    Utterance,
)
from .pool import SessionPool
from .ray_engine import RayEngine, ray_available

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_SAY",
    "JOB_KINDS",
    "PACED_RECORD_COST",
    "PROCESS_COST",
    "RECORD_READ_INTERVAL",
    "SESSION_COST",
    "Admission",
    "Booking",
    "Engine",
    "EngineStateError",
    "FleetJob",
    "FleetReport",
    "JobKind",
    "JobResult",
    "Load",
    "RayEngine",
    "SessionPool",
    "SharedFrame",
    "Utterance",
    "aggregate",
    "costs_for",
    "plot_fleet",
    "ray_available",
]
