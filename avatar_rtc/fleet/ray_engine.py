"""RayEngine: the same jobs as Ray tasks, on a local Ray instance or a cluster (``address``).

Needs the ``ray`` extra (``pip install 'avatar-rtc[ray]'``). Each job is one Ray task running
:func:`~.runner.run_job` on its own event loop in a Ray worker process. Admission is Ray's own
resource accounting: a task asks for ``(PROCESS_COST + cost) / limit`` CPUs (:mod:`.admission`:
the task's worker process serves this one session, so its fixed share is the job's too), so a
node runs jobs while their measured cost stays under ``limit`` of its cores, and queues the
rest.

The worker writes the recording and the QA report on its node (a temporary folder), then
sends both back with the result: the caller writes them into its ``out_dir``, so files are
gathered whichever machine ran the job. Sessions connect from the node that runs them: with
a cluster, the target must be reachable from every node (not the caller's loopback emulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import event_loop
from ..errors import ConfigurationError, NetworkError
from .admission import DEFAULT_LIMIT, PROCESS_COST, Load, with_costs
from .engine import Engine
from .errors import EngineStateError
from .jobs import FleetJob, JobKind, JobResult, not_run

__all__ = ["RayEngine", "ray_available"]

logger = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'avatar-rtc[ray]'"
# Ray retries an address where no cluster answers for minutes: we ask it first, for this long,
# and give ray.init() this long in all (a local start takes seconds).
REACH_TIMEOUT = 5.0
INIT_TIMEOUT = 120.0


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class RayEngine(Engine):
    """See the module docstring. ``address``: a Ray cluster (``ray://...``, ``host:port``,
    ``auto``); ``None`` starts a local Ray instance with ``num_cpus`` (default: every core),
    stopped again by :meth:`close`. ``costs`` and ``process_cost``: the caller's own figures
    for other streams or machines (defaults: :mod:`.admission`'s)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        limit: float = DEFAULT_LIMIT,
        costs: Mapping[JobKind, float] | None = None,
        process_cost: float = PROCESS_COST,
        num_cpus: int | None = None,
    ) -> None:
        if not 0 < limit <= 1:
            raise ConfigurationError("limit must be within (0, 1]")
        if process_cost < 0:
            raise ConfigurationError("process_cost must be >= 0")
        self.address = address
        self.limit = limit
        self.costs: Mapping[JobKind, float] = with_costs(costs)
        self.process_cost = process_cost
        self._num_cpus = num_cpus
        self._remote: Any = None
        self._started_ray = False
        self._pending: dict[Any, FleetJob] = {}  # ObjectRef -> job, until its result came
        self._results: set[asyncio.Future[JobResult]] = set()
        self._accepting = False
        # Set once Ray is shut down: the thread that started it may end (see _call_in_keeper).
        self._ray_stopped = threading.Event()

    async def start(self) -> RayEngine:
        if self._accepting:
            raise EngineStateError("the engine is started already")
        if self.address is not None:
            await _reachable(self.address)
        try:
            import ray
        except ImportError as exc:
            raise ConfigurationError(f"the Ray engine needs the ray extra: {EXTRA_HINT}") from exc
        if not ray.is_initialized():
            init = functools.partial(
                ray.init,
                address=self.address,
                num_cpus=self._num_cpus if self.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            try:
                async with asyncio.timeout(INIT_TIMEOUT):
                    await _call_in_keeper(init, self._ray_stopped)
            except TimeoutError:
                where = f"at {self.address}" if self.address else "locally"
                raise NetworkError(f"Ray did not start {where} within {INIT_TIMEOUT:g} s") from None
            self._started_ray = True
        self._remote = ray.remote(max_retries=0)(_ray_job)
        self._accepting = True
        return self

    def submit(self, job: FleetJob) -> asyncio.Future[JobResult]:
        """Run ``job`` as a Ray task; the future's result has the gathered file paths."""
        if not self._accepting:
            raise EngineStateError("the engine is not accepting jobs (not started, or draining)")
        if job.share_frames:
            raise ConfigurationError("share_frames needs the local pool (shared memory)")
        ref = self._remote.options(num_cpus=self.task_cpus(job.kind)).remote(job)
        self._pending[ref] = job
        future = asyncio.ensure_future(self._gather(ref, job))
        self._results.add(future)
        future.add_done_callback(self._results.discard)
        return future

    def task_cpus(self, kind: JobKind) -> float:
        """The CPUs a ``kind`` task asks Ray for: its cost and its process's, over the limit."""
        return (self.process_cost + self.costs[kind]) / self.limit

    async def _gather(self, ref: Any, job: FleetJob) -> JobResult:
        try:
            result, files = await ref
        except Exception as exc:  # the task failed or was cancelled (stop)
            name = type(exc).__name__
            if "Cancel" in name:  # (a running one ends with its result: _run_until_cancelled)
                return not_run(job, "not run: the engine was stopped")
            return JobResult(
                job.index, job.kind, ok=False, error=f"ray: {name}: {exc}", exit_code=1
            )
        finally:
            self._pending.pop(ref, None)
        _write_gathered(job, result, files)
        return result  # type: ignore[no-any-return]

    def load(self) -> Load:
        """The cluster's CPUs in use by our tasks' requests, scaled back to measured cost."""
        import ray

        api: Any = ray  # partly typed: its resource calls are not
        total = api.cluster_resources().get("CPU", 0.0)
        free = api.available_resources().get("CPU", 0.0)
        used = max(0.0, total - free) * self.limit
        booked = tuple(used / total for _ in range(int(total))) if total else ()
        return Load(booked, len(self._pending), 0, self.limit)

    def stop(self) -> None:
        """Cancel every unfinished task: a queued one never runs; a running one ends at once
        and finalises its files (Ray's cancel interrupts it; see ``_run_until_cancelled``)."""
        import ray

        self._accepting = False
        for ref in list(self._pending):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)

    async def drain(self) -> None:
        self._accepting = False
        if self._results:
            await asyncio.wait(self._results)

    async def close(self) -> None:
        await self.drain()
        if self._started_ray:
            import ray

            await asyncio.to_thread(ray.shutdown)
            self._started_ray = False
            self._ray_stopped.set()


def _write_gathered(job: FleetJob, result: JobResult, files: dict[str, bytes]) -> None:
    """Write the files a task sent back into the job's ``out_dir``; point the result at them."""
    if not files or job.out_dir is None:
        return
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recording = files.get("file")
    if recording is not None and result.file is not None:  # first: the report names it
        target = out / Path(result.file).name
        target.write_bytes(recording)
        result.file = str(target)
    report = files.get("report_file")
    if report is not None and result.report_file is not None:
        if result.file is not None:
            report = _naming_source(report, result.file)
        target = out / Path(result.report_file).name
        target.write_bytes(report)
        result.report_file = str(target)


def _naming_source(report: bytes, recording: str) -> bytes:
    """A QA report (as ``runner`` writes it) whose ``source`` is the gathered recording, not
    the worker's temporary copy (gone with its folder)."""
    data = json.loads(report)
    data["source"] = recording
    return (json.dumps(data, indent=2) + "\n").encode()


def _ray_job(job: FleetJob) -> tuple[JobResult, dict[str, bytes]]:
    """The Ray task: run the job in a temporary folder of this node, return its files."""
    folder = tempfile.mkdtemp(prefix="avatar-rtc-fleet-")
    try:
        local = dataclasses.replace(job, out_dir=folder) if job.out_dir is not None else job
        result = event_loop.run(_run_until_cancelled(local))
        files = {
            field: Path(path).read_bytes()
            for field in ("file", "report_file")
            if (path := getattr(result, field)) is not None and Path(path).is_file()
        }
        return result, files
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _run_until_cancelled(job: FleetJob) -> JobResult:
    """``run_job(job)``, ended as the local pool ends its jobs when Ray cancels the task.

    Ray's cancel interrupts a running task with ``_thread.interrupt_main()``: a SIGINT as far
    as Python can tell. Caught here it stops the job, which finalises its file and returns
    (interrupted), rather than a KeyboardInterrupt that lost the session's files.
    """
    from .runner import run_job  # (the media stack: in the worker only)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (a driver)
        return await run_job(job)
    try:
        return await run_job(job, stop=stop)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _reachable(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) where nothing listens is a NetworkError in
    seconds (``auto`` and other forms are left to Ray)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        async with asyncio.timeout(REACH_TIMEOUT):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise NetworkError(f"no Ray cluster answers at {address}: {reason}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _call_in_keeper(fn: Callable[[], object], release: threading.Event) -> None:
    """``fn()`` in a daemon thread that, once it returned, lives on until ``release`` is set.

    Daemon: a cancellation (Ctrl-C, SIGTERM, a timeout) ends the wait, and the process may
    exit while ``fn`` still blocks (``asyncio.to_thread``'s threads are joined at exit: a
    ``ray.init`` stuck on an address kept the CLI from ending). Kept: Ray ties the processes
    it starts (GCS, raylet) to the thread that started them (``PR_SET_PDEATHSIG``), which
    kills them when that thread ends.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            fn()
        except BaseException as exc:  # handed to the waiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, error)
        if error is None:
            release.wait()

    threading.Thread(target=run, name="avatar-rtc-ray-init", daemon=True).start()
    await done
