"""The hand-off between the producer (event loop) and the writer thread.

Bounded by bytes and by items; ``put`` never blocks (the event loop must not stall on disk),
it refuses the item instead and the caller counts it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["ByteBoundedQueue"]

T = TypeVar("T")


class ByteBoundedQueue(Generic[T]):
    """FIFO with a byte and an item bound; ``put`` is non-blocking, ``get`` blocks."""

    def __init__(self, max_bytes: int, max_items: int) -> None:
        self._max_bytes = max_bytes
        self._max_items = max_items
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._peak_bytes = 0
        self._peak_items = 0
        self._cond = threading.Condition(threading.Lock())

    def put(self, item: T, size: int) -> bool:
        """Append ``item`` of ``size`` bytes; False (nothing queued) when over a bound."""
        with self._cond:
            if self._items and (
                self._bytes + size > self._max_bytes or len(self._items) >= self._max_items
            ):
                return False
            self._append(item, size)
            return True

    def put_force(self, item: T, size: int = 0) -> None:
        """Append regardless of the bounds (control messages such as the stop marker)."""
        with self._cond:
            self._append(item, size)

    def _append(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        self._peak_bytes = max(self._peak_bytes, self._bytes)
        self._peak_items = max(self._peak_items, len(self._items))
        self._cond.notify()

    def get(self) -> T:
        """Remove and return the oldest item, waiting for one."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            item, size = self._items.popleft()
            self._bytes -= size
            return item

    def depth(self) -> tuple[int, int, int, int]:
        """(items, bytes, peak items, peak bytes)."""
        with self._cond:
            return len(self._items), self._bytes, self._peak_items, self._peak_bytes
