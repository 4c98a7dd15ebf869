"""The event loops avatar-rtc starts itself: asyncio's, or uvloop's when asked for.

The CLI, the emulator command, the fleet's worker processes and Ray tasks, and the sync
twins' background loop run on :func:`new_event_loop`. ``AVATAR_RTC_EVENT_LOOP=uvloop``
(``pip install 'avatar-rtc[uvloop]'``) puts them on uvloop's loop; ``auto`` does when it is
installed; ``asyncio`` (the default) keeps asyncio's. asyncio's is the default because uvloop
measured no cheaper here: the receive fast path already reads every queued datagram per
wake-up (:mod:`avatar_rtc.rtc.datagram_batch`), which is where a faster loop would save.
``scripts/bench_scale.py`` with the variable set compares them (2 cores, 3 runs of 6 s,
CPU per session, asyncio / uvloop: decode 3.7 / 3.8 % at 4 sessions and 2.6 / 3.1 % at 12;
copy-record 1.3 / 1.5 % and 1.1 / 1.1 %). An application that runs its own loop keeps it: the
library works on either.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from .errors import ConfigurationError

__all__ = ["ENV", "LoopKind", "loop_kind", "new_event_loop", "run"]

ENV = "AVATAR_RTC_EVENT_LOOP"
LoopKind = Literal["uvloop", "asyncio"]
_CHOICES = ("asyncio", "uvloop", "auto")

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_kind() -> LoopKind:
    """The loop :func:`new_event_loop` makes, by ``AVATAR_RTC_EVENT_LOOP`` and what is
    installed; a misspelt value, or ``uvloop`` without uvloop, is a ConfigurationError."""
    wanted = os.environ.get(ENV, "").strip().lower() or "asyncio"
    if wanted not in _CHOICES:
        raise ConfigurationError(f"{ENV}={wanted!r}: expected one of {', '.join(_CHOICES)}")
    if wanted == "asyncio":
        return "asyncio"
    if _uvloop_factory() is not None:
        return "uvloop"
    if wanted == "uvloop":
        raise ConfigurationError(
            f"{ENV}=uvloop but uvloop is not installed (pip install 'avatar-rtc[uvloop]')"
        )
    return "asyncio"


def _chosen() -> tuple[LoopKind, Callable[[], asyncio.AbstractEventLoop]]:
    kind = loop_kind()
    factory = _uvloop_factory() if kind == "uvloop" else None
    return kind, factory or asyncio.new_event_loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind :func:`loop_kind` says."""
    return _chosen()[1]()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a loop of the kind :func:`loop_kind` says."""
    try:
        kind, factory = _chosen()  # a misspelt AVATAR_RTC_EVENT_LOOP fails before ``main`` runs
    except ConfigurationError:
        main.close()  # no "coroutine was never awaited" warning
        raise
    logger.info("event loop: %s", kind)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
