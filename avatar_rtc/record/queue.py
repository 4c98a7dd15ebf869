"""The hand-off between the producer (event loop) and the writer thread.

Bounded by bytes and by items; ``put`` never blocks (the event loop must not stall on disk),
it refuses the item instead and the caller counts it.

Waking the writer is what a ``put`` costs most: a condition notify that hands the GIL to the
writer thread, ~80 µs per frame on the event loop with 4 copy-recording sessions in one
process (``scripts/profile_receive.py``), more than the rest of the frame's receive path. With
``batch_delay`` the writer looks every ``batch_delay`` seconds instead and takes everything
queued at once; a put wakes it only when a quarter of a bound is used (or for a control
message, such as the stop marker), and :meth:`wake` wakes it on demand.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["ByteBoundedQueue"]

T = TypeVar("T")


class ByteBoundedQueue(Generic[T]):
    """FIFO with a byte and an item bound; ``put`` is non-blocking, ``get`` blocks.

    ``batch_delay``: 0 wakes the reader for every item; otherwise items may wait up to that
    many seconds for it (see the module docstring).
    """

    def __init__(self, max_bytes: int, max_items: int, *, batch_delay: float = 0.0) -> None:
        if batch_delay < 0:
            raise ValueError("batch_delay must be >= 0")
        self._max_bytes = max_bytes
        self._max_items = max_items
        self._batch_delay = batch_delay
        self._wake_bytes = max_bytes // 4 if batch_delay else 0
        self._wake_items = max(1, max_items // 4) if batch_delay else 1
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
            if len(self._items) >= self._wake_items or self._bytes >= self._wake_bytes > 0:
                self._cond.notify()
            return True

    def put_force(self, item: T, size: int = 0) -> None:
        """Append regardless of the bounds (control messages such as the stop marker); the
        reader is woken at once."""
        with self._cond:
            self._append(item, size)
            self._cond.notify()

    def _append(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        self._peak_bytes = max(self._peak_bytes, self._bytes)
        self._peak_items = max(self._peak_items, len(self._items))

    def get(self) -> T:
        """Remove and return the oldest item, waiting for one."""
        with self._cond:
            while not self._items:
                self._cond.wait(self._batch_delay or None)
            item, size = self._items.popleft()
            self._bytes -= size
            return item

    def wake(self) -> None:
        """Wake the reader now if anything is queued (someone is about to read its progress)."""
        with self._cond:
            if self._items:
                self._cond.notify()

    def depth(self) -> tuple[int, int, int, int]:
        """(items, bytes, peak items, peak bytes)."""
        with self._cond:
            return len(self._items), self._bytes, self._peak_items, self._peak_bytes
