"""SessionPool: sessions in worker processes, one per core, each with its own event loop.

One core's saturation or one slow consumer stalls only the sessions of that process. Jobs
(:class:`~.jobs.FleetJob`) go to the workers by measured cost (:class:`~.admission.Admission`:
a job waits in the pool's queue until a worker has room under the limit; every second the
pool measures what each worker uses, :mod:`.process_cpu`, and admission books that when it is
more than the worker's jobs' costs); a worker runs its
jobs concurrently on its loop (:func:`~.runner.run_job`), writes files and QA reports itself
and sends back only the :class:`~.jobs.JobResult`. Frames of ``decode`` jobs with
``share_frames`` reach the caller through the worker's shared-memory ring
(:mod:`.frames`): ``on_frame(callback)``.

::

    async def main() -> None:
        async with SessionPool() as pool:
            results = await asyncio.gather(*(pool.submit(job) for job in jobs))

    if __name__ == "__main__":  # (the workers are spawned: each imports this module)
        asyncio.run(main())

Leaving the ``async with`` drains: no new jobs, the queued and running ones finish, then the
workers exit. :meth:`stop` ends it early: queued jobs are not run, running ones end now and
still finalise their files. Worker processes are started with ``spawn`` (no fork of a process
with threads) and ignore SIGINT: the caller decides what a Ctrl-C means.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from typing import Any

from .. import event_loop
from ..errors import ConfigurationError
from .admission import DEFAULT_LIMIT, Admission, Booking, Load
from .engine import Engine
from .errors import EngineStateError
from .frames import FrameMeta, FrameRing, RingSpec, SharedFrame
from .jobs import FleetJob, JobKind, JobResult, not_run
from .process_cpu import CpuMeter

__all__ = ["FrameCallback", "SessionPool"]

logger = logging.getLogger(__name__)

FrameCallback = Callable[[SharedFrame], None]
EXIT_TIMEOUT = 30.0  # bound on a worker's exit once told to (its sessions close first)
MEASURE_INTERVAL = 1.0  # seconds between measurements of the workers' CPU
EXIT_REAP = 1.0  # bound on reaping a worker whose pipe closed (it died): for its exit code


@dataclass
class _Worker:
    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    ring: FrameRing | None
    alive: bool = True


@dataclass
class _Running:
    booking: Booking  # its worker is booking.process
    job: FleetJob
    future: asyncio.Future[JobResult]
    sent_at: float = field(default_factory=time.time)  # wall clock: files' times are on it


class SessionPool(Engine):
    """See the module docstring.

    ``processes``: worker processes (default: one per core). ``limit`` and ``costs``: the
    admission (:mod:`.admission`); ``measure=False`` books the costs alone, not what the
    workers are measured to use. ``frame_size`` ``(width, height)``: give each worker a
    ring of ``frame_slots`` rgb24 frames of that size, for ``share_frames`` jobs.
    """

    def __init__(
        self,
        processes: int | None = None,
        *,
        limit: float = DEFAULT_LIMIT,
        costs: Mapping[JobKind, float] | None = None,
        frame_size: tuple[int, int] | None = None,
        frame_slots: int = 8,
        measure: bool = True,
    ) -> None:
        if processes is not None and processes < 1:  # (0 took every core)
            raise ConfigurationError("processes must be >= 1 (None: one per core)")
        self.processes = processes or os.cpu_count() or 1
        self.admission = Admission(self.processes, limit=limit, costs=costs)
        self._frame_size = frame_size
        self._frame_slots = frame_slots
        self._workers: list[_Worker] = []
        self._queue: list[tuple[int, FleetJob, asyncio.Future[JobResult]]] = []
        self._running: dict[int, _Running] = {}
        self._ids = itertools.count()
        self._frame_callbacks: list[FrameCallback] = []
        self._accepting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._meter = CpuMeter() if measure else None
        self._measuring: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> SessionPool:
        if self._workers:
            raise EngineStateError("the pool is started already")
        # (fresh books: a pool started again after close() has new processes)
        admission = self.admission
        self.admission = Admission(self.processes, limit=admission.limit, costs=admission.costs)
        self._loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger("avatar_rtc").getEffectiveLevel()
        try:
            for number in range(self.processes):
                self._spawn(context, number, level)
        except BaseException:  # (no shared memory, no process...): end those that started
            await self.close()
            raise
        self._accepting = True
        if self._meter is not None:
            self._measuring = asyncio.create_task(self._measure(self._meter))
        logger.info("session pool: %d worker processes", self.processes)
        return self

    def _spawn(self, context: SpawnContext, number: int, level: int) -> None:
        assert self._loop is not None
        ring = None
        if self._frame_size is not None:
            ring = FrameRing.create(self._frame_slots, *self._frame_size)
        ours, theirs = context.Pipe()
        process = context.Process(
            target=worker_main,
            args=(theirs, ring.spec if ring else None, level),
            name=f"avatar-rtc-fleet-{number}",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            if ring is not None:
                ring.close()
            raise
        finally:
            theirs.close()
        self._workers.append(_Worker(process, ours, ring))
        self._loop.add_reader(ours.fileno(), self._on_message, number)

    def stop(self) -> None:
        """Run no queued job; running ones end now (files finalised, results still come)."""
        self._accepting = False
        for _, job, future in self._queue:
            if not future.done():
                future.set_result(not_run(job, "not run: the pool was stopped"))
        self._queue.clear()
        for worker in self._workers:
            self._send(worker, ("stop",))

    async def drain(self) -> None:
        """Accept no new job; wait for the queued and running ones."""
        self._accepting = False
        pending = [f for _, _, f in self._queue] + [r.future for r in self._running.values()]
        if pending:
            await asyncio.wait(pending)

    async def close(self) -> None:
        """Drain, then end the worker processes and free the rings."""
        await self.drain()
        if self._measuring is not None:
            self._measuring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._measuring
            self._measuring = None
        for worker in self._workers:
            self._send(worker, ("exit",))
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, EXIT_TIMEOUT)
            if worker.process.is_alive():
                logger.warning("worker %s did not exit: terminating it", worker.process.pid)
                worker.process.terminate()
                await asyncio.to_thread(worker.process.join, 5.0)
            self._drop(worker)
            if worker.ring is not None:
                worker.ring.close()
        self._workers.clear()

    # --- jobs -------------------------------------------------------------------------------

    def submit(self, job: FleetJob) -> asyncio.Future[JobResult]:
        """Queue ``job``; the future's result comes when it ran (or could not run)."""
        if not self._accepting or self._loop is None:
            raise EngineStateError("the pool is not accepting jobs (not started, or draining)")
        if job.share_frames and self._frame_size is None:
            raise ConfigurationError("share_frames needs a pool with frame_size")
        future: asyncio.Future[JobResult] = self._loop.create_future()
        self._queue.append((next(self._ids), job, future))
        self._admit()
        return future

    def load(self) -> Load:
        return self.admission.load(queued=len(self._queue))

    def on_frame(self, callback: FrameCallback) -> Callable[[], None]:
        """Call ``callback(frame)`` for every shared frame (on the event loop); it must
        ``release()`` the frame (or keep a ``copy()``): the slot stays taken until then. Each
        callback gets a handle of its own (the slot is free once every one is released); a
        callback that raises has its handle released for it."""
        self._frame_callbacks.append(callback)

        def remove() -> None:  # (twice is no error, as for a session's handlers)
            with contextlib.suppress(ValueError):
                self._frame_callbacks.remove(callback)

        return remove

    async def _measure(self, meter: CpuMeter) -> None:
        """Every MEASURE_INTERVAL: each worker's CPU to the admission, then admit again (a
        worker measured busy may have room now)."""
        while True:
            for number, worker in enumerate(self._workers):
                cores = meter.sample(worker.process.pid) if worker.alive else None
                self.admission.measured(number, cores)
            self._admit()
            await asyncio.sleep(MEASURE_INTERVAL)

    def _admit(self) -> None:
        while self._queue:
            if not any(worker.alive for worker in self._workers):
                for _, job, future in self._queue:
                    future.set_result(_failed(job, "not run: every worker process is gone"))
                self._queue.clear()
                return
            job_id, job, future = self._queue[0]
            booking = self.admission.place(job.kind)
            if booking is None:
                return
            worker = self._workers[booking.process]
            if not worker.alive:  # gone, not noticed yet: the job goes elsewhere
                self.admission.release(booking, ran=False)
                self.admission.retire(booking.process)
                continue
            self._queue.pop(0)
            self._running[job_id] = _Running(booking, job, future)
            self._send(worker, ("run", job_id, job))

    # --- from the workers -------------------------------------------------------------------

    def _on_message(self, number: int) -> None:
        worker = self._workers[number]
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._worker_gone(number)
            return
        if message[0] == "result":
            _, job_id, result = message
            running = self._running.pop(job_id)
            self.admission.release(running.booking)
            if not running.future.done():
                running.future.set_result(result)
            self._admit()
        elif message[0] == "frame":
            self._deliver(worker, message[1])

    def _deliver(self, worker: _Worker, meta: FrameMeta) -> None:
        assert worker.ring is not None
        callbacks = tuple(self._frame_callbacks)
        if not callbacks:
            worker.ring.release(meta.slot)
            return
        for callback, frame in zip(
            callbacks, worker.ring.frames(meta, len(callbacks)), strict=True
        ):
            try:
                callback(frame)
            except Exception:
                logger.exception("frame callback failed")
                frame.release()  # else its slot stays taken for good

    def _worker_gone(self, number: int) -> None:
        worker = self._workers[number]
        self._drop(worker)
        self.admission.retire(number)  # else, idle, it would take every next job
        worker.process.join(EXIT_REAP)  # (its pipe closed as it died: at once, in practice)
        code = worker.process.exitcode
        for job_id, running in list(self._running.items()):
            if running.booking.process == number:
                del self._running[job_id]
                self.admission.release(running.booking)
                if not running.future.done():
                    running.future.set_result(_died(running.job, code, running.sent_at))
        self._admit()

    def _drop(self, worker: _Worker) -> None:
        if worker.alive and self._loop is not None:
            worker.alive = False
            self._loop.remove_reader(worker.conn.fileno())
            worker.conn.close()

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        if worker.alive:
            try:
                worker.conn.send(message)
            except OSError:  # it died meanwhile: _on_message sees the EOF
                logger.warning("worker %s is gone", worker.process.pid)


def _failed(job: FleetJob, error: str) -> JobResult:
    return JobResult(job.index, job.kind, ok=False, error=error, exit_code=1)


def _died(job: FleetJob, exit_code: int | None, sent_at: float) -> JobResult:
    """The result of a job whose worker died: with the file it was writing, if any (not
    finalised: an mp4 without its index does not play; Matroska and WebM play to the end;
    a file at its path not written since the job was sent is an earlier run's)."""
    result = _failed(job, f"its worker process ended (exit code {exit_code})")
    path = job.output_path
    if path is not None and path.exists() and path.stat().st_mtime >= sent_at - 1.0:
        result.file = str(path)
        result.error = f"{result.error}; the file it was writing is unfinished"
    return result


# --- the worker process -----------------------------------------------------------------------


def worker_main(conn: Connection, ring: RingSpec | None, log_level: int) -> None:
    """Entry point of a worker process: serve jobs until told to exit (or the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    logging.getLogger("avatar_rtc").setLevel(log_level)
    event_loop.run(_serve(conn, FrameRing.attach(ring) if ring else None))


async def _serve(conn: Connection, ring: FrameRing | None) -> None:
    from ..media.frames import VideoFrame
    from ..redact import install_log_redaction, redact
    from .runner import run_job

    install_log_redaction()
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
    running: dict[int, tuple[asyncio.Task[JobResult], asyncio.Event]] = {}

    def receive() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the pool is gone: finish up
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(None)

    def share(job: int, frame: VideoFrame) -> bool:
        assert ring is not None
        slot = ring.write(frame.av_frame)
        if slot is None:
            return False
        meta = FrameMeta(
            job, slot, frame.rtp_timestamp, frame.presentation_time, frame.arrival_time
        )
        conn.send(("frame", meta))
        return True

    def finished(job_id: int, job: FleetJob, task: asyncio.Task[JobResult]) -> None:
        running.pop(job_id, None)
        if task.cancelled():
            return
        crash = task.exception()
        if crash is None:
            result = task.result()
        else:  # (a missing extra's ImportError...): the pool would wait for it for ever
            logger.error("job %d failed", job.index, exc_info=crash)
            result = _failed(job, redact(f"{type(crash).__name__}: {crash}"))
        with contextlib.suppress(OSError):
            conn.send(("result", job_id, result))

    loop.add_reader(conn.fileno(), receive)
    while True:
        message = await inbox.get()
        if message is None or message[0] in ("stop", "exit"):
            for _, stop in running.values():
                stop.set()
            if message is not None and message[0] == "stop":
                continue
            break
        _, job_id, job = message
        stop = asyncio.Event()
        task = asyncio.create_task(run_job(job, stop=stop, frames=share if ring else None))
        task.add_done_callback(functools.partial(finished, job_id, job))
        running[job_id] = (task, stop)
    if running:
        await asyncio.wait([task for task, _ in running.values()])
    with contextlib.suppress(ValueError, OSError):
        loop.remove_reader(conn.fileno())
    if ring is not None:
        ring.close()
