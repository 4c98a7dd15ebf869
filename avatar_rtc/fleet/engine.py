"""Engine: what the fleet command needs of a way to run jobs (local pool or Ray)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol, Self

from .admission import Load
from .jobs import FleetJob, JobResult

__all__ = ["Engine"]


class Engine(Protocol):
    """:class:`~.pool.SessionPool` and :class:`~.ray_engine.RayEngine` are engines (they
    subclass this for its ``async with``: start; on an error stop; then close)."""

    async def start(self) -> Self: ...

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.stop()
        await self.close()

    def submit(self, job: FleetJob) -> asyncio.Future[JobResult]:
        """Queue ``job``; the result comes when it ran (or could not run, ``ok`` False)."""
        ...

    def load(self) -> Load: ...

    def stop(self) -> None:
        """Run no queued job; running ones end early (the local pool still finalises their
        files; Ray interrupts its tasks)."""
        ...

    async def close(self) -> None:
        """Drain (queued and running jobs finish), then release the engine's processes."""
        ...
