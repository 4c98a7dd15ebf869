"""How the fuzz areas over loopback HTTP run their cases: one event loop and one or more
:class:`ReplyServer` for the whole test, then per case the same steps (its input noted for
Hypothesis, fresh logs, a hang guard, the outcome judged by ``check_outcome``, the case
counted). The area's test ends by checking its quota of cases ran."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import note

from .planted import CASES, check_outcome, outcome_of
from .server import ReplyServer

__all__ = ["HttpArea", "http_area"]


@dataclass(frozen=True)
class HttpArea:
    """``runner``: the test's event loop; ``servers``: its loopback servers (``server``: the
    first); ``name``: the area's entry in ``CASES``."""

    name: str
    runner: asyncio.Runner
    servers: tuple[ReplyServer, ...]
    caplog: pytest.LogCaptureFixture

    @property
    def server(self) -> ReplyServer:
        return self.servers[0]

    def run(
        self,
        case: object,
        action: Callable[[], Awaitable[object]],
        *,
        success: type[BaseException] | tuple[type[BaseException], ...] = (),
    ) -> None:
        """One case: ``action()`` must end well (``success``: exceptions that mean it did)."""
        note(f"input: {case!r}")
        self.caplog.clear()
        _, error = self.runner.run(outcome_of(action))
        check_outcome(None if isinstance(error, success) else error, self.caplog.text)
        CASES[self.name] += 1


@contextlib.contextmanager
def http_area(
    caplog: pytest.LogCaptureFixture, name: str, quota: int, *, servers: int = 1
) -> Iterator[HttpArea]:
    """The loop and ``servers`` started for the body; after it, ``quota`` cases must have run."""
    caplog.set_level(logging.DEBUG)
    with asyncio.Runner() as runner:
        started: list[ReplyServer] = []
        try:
            for _ in range(servers):
                server = ReplyServer()
                runner.run(server.__aenter__())
                started.append(server)
            yield HttpArea(name, runner, tuple(started), caplog)
        finally:
            for server in started:
                runner.run(server.__aexit__())
    assert CASES[name] >= quota
