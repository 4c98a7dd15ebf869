"""ByteBoundedQueue: bounds, and when the writer thread is woken (batched or per item)."""

from __future__ import annotations

import threading
import time

import pytest

from avatar_rtc.record.queue import ByteBoundedQueue

NEVER = 3600.0  # a batch delay no test waits out: a reader that returns was woken by a put


def _reader(queue: ByteBoundedQueue[str]) -> tuple[threading.Thread, list[str]]:
    """A thread blocked in ``queue.get()`` (returned once it waits: a put before that would
    be taken without any wake-up)."""
    got: list[str] = []
    thread = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    thread.start()
    while not queue._cond._waiters:  # type: ignore[attr-defined]  # CPython's Condition
        time.sleep(0.001)
    return thread, got


def test_bounds_refuse_and_count() -> None:
    queue: ByteBoundedQueue[str] = ByteBoundedQueue(max_bytes=10, max_items=3)
    assert queue.put("a", 6)
    assert not queue.put("b", 6)  # over the byte bound
    assert queue.put("c", 1) and queue.put("d", 1)
    assert not queue.put("e", 0)  # over the item bound
    queue.put_force("stop")  # control messages go in regardless
    assert [queue.get() for _ in range(4)] == ["a", "c", "d", "stop"]
    assert queue.depth() == (0, 0, 4, 8)


def test_without_a_batch_delay_each_put_wakes_the_reader() -> None:
    queue: ByteBoundedQueue[str] = ByteBoundedQueue(1000, 100)
    thread, got = _reader(queue)
    queue.put("frame", 10)
    thread.join()  # (no bound: pytest-timeout guards a hang)
    assert got == ["frame"]


def test_with_a_batch_delay_a_put_does_not_wake_the_reader() -> None:
    queue: ByteBoundedQueue[str] = ByteBoundedQueue(1000, 100, batch_delay=NEVER)
    thread, got = _reader(queue)
    queue.put("frame", 10)
    thread.join(0.3)
    assert thread.is_alive() and got == []  # the frame waits for the batch
    queue.put_force("stop")  # a control message wakes it at once
    thread.join()
    assert got == ["frame"]
    assert queue.get() == "stop"


@pytest.mark.parametrize(("size", "count"), [(1, 25), (250, 1)], ids=["items", "bytes"])
def test_a_quarter_of_a_bound_wakes_the_reader(size: int, count: int) -> None:
    queue: ByteBoundedQueue[str] = ByteBoundedQueue(1000, 100, batch_delay=NEVER)
    thread, got = _reader(queue)
    for n in range(count - 1):
        queue.put(f"f{n}", size)
    if count > 1:
        thread.join(0.2)
        assert thread.is_alive()  # under a quarter: still asleep
    queue.put("last", size)
    thread.join()
    assert got == ["f0" if count > 1 else "last"]


def test_with_a_batch_delay_the_reader_looks_on_its_own() -> None:
    queue: ByteBoundedQueue[str] = ByteBoundedQueue(1000, 100, batch_delay=0.05)
    thread, got = _reader(queue)
    queue.put("frame", 10)
    thread.join()  # it returns without another put: it looked after batch_delay
    assert got == ["frame"]


def test_a_negative_batch_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_delay"):
        ByteBoundedQueue(10, 10, batch_delay=-1)


def test_wake_hands_what_is_queued_to_the_reader_at_once() -> None:
    queue: ByteBoundedQueue[str] = ByteBoundedQueue(1000, 100, batch_delay=NEVER)
    thread, got = _reader(queue)
    queue.put("frame", 10)
    thread.join(0.2)
    assert thread.is_alive()  # batched: asleep
    queue.wake()  # (what Recorder.stats() does: the next snapshot is current)
    thread.join()
    assert got == ["frame"]
