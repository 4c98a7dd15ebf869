"""Frames across the process boundary: a ring of slots in shared memory, one per worker.

The pool creates one :class:`FrameRing` per worker process (``multiprocessing.shared_memory``);
the worker converts a decoded frame to rgb24 at the ring's size and writes it into a free slot
(:meth:`FrameRing.write`: the pixels' only copy on their way to the caller), then sends the
slot number and timestamps down its pipe. The caller gets a :class:`SharedFrame`, a numpy
view of the slot (no copy), and releases the slot when done; with no free slot the worker
drops the frame (the newest wins on the next one: a slow consumer never stalls a session).

One writer (the worker's event loop) and one reader (the caller) per ring; a slot's state
byte says who owns it: free (0) -> being written (2) -> the reader's (1) -> free.

An array the caller still holds when the ring closes stays readable: the views hold the
mapping (``np.frombuffer`` keeps the buffer exported), so closing removes the block's name and
keeps the mapping (unmapping it under a view would crash the process) until a later ring's
close finds no view left. A :class:`SharedFrame` of a closed ring releases as a no-op; its
``array`` is refused (``ValueError``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigurationError
from ..media.scale import scale

__all__ = ["FrameMeta", "FrameRing", "RingSpec", "SharedFrame"]

logger = logging.getLogger(__name__)

# Mappings closed while a caller still held a view of them; unmapped once the views are gone.
_lingering: list[shared_memory.SharedMemory] = []

_FREE, _READER, _WRITING = 0, 1, 2
_ALIGN = 64


@dataclass(frozen=True)
class RingSpec:
    """What a process needs to open a ring (picklable)."""

    name: str
    slots: int
    width: int
    height: int

    @property
    def slot_bytes(self) -> int:
        return self.width * self.height * 3


@dataclass(frozen=True)
class FrameMeta:
    """What travels down the pipe with a frame (the pixels stay in the slot)."""

    job: int
    slot: int
    rtp_timestamp: int
    presentation_time: float
    arrival_time: float


class FrameRing:
    """See the module docstring. :meth:`create` in the caller, :meth:`attach` in the worker."""

    def __init__(self, memory: shared_memory.SharedMemory, spec: RingSpec, *, owner: bool) -> None:
        self.spec = spec
        self._memory = memory
        self._owner = owner
        self._next = 0
        self.closed = False
        buf = memory.buf
        assert buf is not None
        # frombuffer, not ndarray(buffer=): its views keep the buffer exported (see above).
        self._slot_states: npt.NDArray[np.uint8] = np.frombuffer(buf, np.uint8, spec.slots)
        if owner:  # a new ring: every slot free
            self._slot_states[:] = _FREE
        offset = -(-spec.slots // _ALIGN) * _ALIGN
        pixels = np.frombuffer(buf, np.uint8, spec.slots * spec.slot_bytes, offset)
        self._pixels: npt.NDArray[np.uint8] = pixels.reshape(spec.slots, spec.height, spec.width, 3)

    @classmethod
    def create(cls, slots: int, width: int, height: int) -> FrameRing:
        if slots < 1 or width < 1 or height < 1:
            raise ConfigurationError("slots, width and height must be >= 1")
        size = -(-slots // _ALIGN) * _ALIGN + slots * width * height * 3
        memory = shared_memory.SharedMemory(create=True, size=size)
        return cls(memory, RingSpec(memory.name, slots, width, height), owner=True)

    @classmethod
    def attach(cls, spec: RingSpec) -> FrameRing:
        return cls(shared_memory.SharedMemory(name=spec.name), spec, owner=False)

    # --- the worker's side ----------------------------------------------------------------

    def write(self, av_frame: Any) -> int | None:
        """Convert ``av_frame`` (a PyAV VideoFrame) into a free slot; its number, or None
        when every slot is still the reader's."""
        slot = self._free_slot()
        if slot is None:
            return None
        self._slot_states[slot] = _WRITING
        spec = self.spec
        rgb = scale(av_frame, width=spec.width, height=spec.height, format="rgb24")
        plane: Any = rgb.planes[0]  # a buffer, though its stub does not say so
        rows = np.frombuffer(plane, np.uint8).reshape(spec.height, plane.line_size)
        target = self._pixels[slot].reshape(spec.height, spec.width * 3)
        np.copyto(target, rows[:, : spec.width * 3])
        self._slot_states[slot] = _READER
        return slot

    def _free_slot(self) -> int | None:
        slots = self.spec.slots
        for step in range(slots):
            slot = (self._next + step) % slots
            if self._slot_states[slot] == _FREE:
                self._next = (slot + 1) % slots
                return slot
        return None

    # --- the caller's side ----------------------------------------------------------------

    def frame(self, meta: FrameMeta) -> SharedFrame:
        return self.frames(meta, 1)[0]

    def frames(self, meta: FrameMeta, holders: int) -> list[SharedFrame]:
        """``holders`` handles of one slot (one per callback): free once each is released."""
        count = [holders]
        return [SharedFrame(self, meta, count) for _ in range(holders)]

    def pixels(self, slot: int) -> npt.NDArray[np.uint8]:
        if self.closed:
            raise ValueError("the frame's pool was closed: copy() a frame to keep it")
        pixels: npt.NDArray[np.uint8] = self._pixels[slot]
        return pixels

    def release(self, slot: int) -> None:
        if not self.closed:  # (a frame released after its pool closed: nothing to free)
            self._slot_states[slot] = _FREE

    def busy(self) -> int:
        """Slots not free (held by the reader or being written)."""
        return int(np.count_nonzero(self._slot_states))

    def close(self) -> None:
        """Unmap (once no caller holds a frame's array); the creator also removes the block."""
        if self.closed:
            return
        self.closed = True
        del self._slot_states, self._pixels
        if self._owner:
            self._memory.unlink()
        _lingering.append(self._memory)
        _unmap_unviewed()


def _unmap_unviewed() -> None:
    for memory in list(_lingering):
        try:
            memory.close()
        except BufferError:  # a view is still alive: try again at the next close
            continue
        _lingering.remove(memory)


class SharedFrame:
    """A frame in a worker's ring: ``array`` is a view of the slot (HxWx3 rgb24, no copy),
    valid until :meth:`release` (or the end of a ``with`` block), after which the worker may
    write another frame into it; :meth:`copy` to keep it."""

    __slots__ = ("_holders", "_ring", "meta", "released")

    def __init__(self, ring: FrameRing, meta: FrameMeta, holders: list[int]) -> None:
        self._ring = ring
        self.meta = meta
        self.released = False
        self._holders = holders  # handles of this slot not released yet (shared by them)

    @property
    def job(self) -> int:
        return self.meta.job

    @property
    def array(self) -> npt.NDArray[np.uint8]:
        if self.released:
            raise ValueError("the frame was released")
        return self._ring.pixels(self.meta.slot)

    def copy(self) -> npt.NDArray[np.uint8]:
        return self.array.copy()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._holders[0] -= 1
            if self._holders[0] == 0:
                self._ring.release(self.meta.slot)

    def __enter__(self) -> SharedFrame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
