"""Counters a test reads to check what the client did to the emulator."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EmulatorCounters"]


@dataclass
class EmulatorCounters:
    """Totals since the emulator started.

    ``calls`` counts every request that reached an endpoint, including those answered
    with an injected fault or an error, so retry tests can count attempts. It is a
    :class:`collections.Counter`: unknown endpoints read as 0.
    """

    sessions_created: int = 0
    sessions_ended: int = 0
    sessions_expired: int = 0
    keep_alives: int = 0
    calls: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.sessions_created = self.sessions_ended = self.sessions_expired = 0
        self.keep_alives = 0
        self.calls.clear()
