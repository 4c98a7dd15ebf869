"""The blocking bridge, used from a plain script in a subprocess."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from avatar_rtc.media.sync_iter import BackgroundLoop, _wait_done

ROOT = Path(__file__).resolve().parents[2]


def test_sync_iterator_from_a_plain_script() -> None:
    script = Path(__file__).with_name("scripts") / "sync_consumer.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    counters = out["counters"]
    assert len(counters) == 20
    assert counters == sorted(counters)
    assert out["shapes"] == [[240, 320, 3]]
    assert out["samples"] >= 16000
    assert out["video_decoding"] is False


def _interrupt_each_wait(main: threading.Thread, waits: list[int], stop: threading.Event) -> int:
    """SIGINT to ``main`` once in each blocking wait of the bridge; how many were sent.

    ``waits[0]`` is the number of the wait the main thread is in or about to enter. The
    interrupt is aimed at the blocking line itself: one landing at a random point of the standard
    library (inside a ``with lock:`` of ``concurrent.futures``, say) can leave a lock held for
    good, which no code of ours can prevent and which is not this test's subject.
    """
    lines, first = inspect.getsourcelines(_wait_done)
    blocking = first + next(i for i, line in enumerate(lines) if "return done.acquire" in line)
    sent = 0
    done = -1
    while not stop.is_set():
        wait = waits[0]  # read before the frame: a wait seen below is this one or later
        frame = sys._current_frames().get(main.ident or 0)
        if (
            wait != done
            and frame is not None
            and frame.f_code is _wait_done.__code__
            and frame.f_lineno == blocking
        ):
            time.sleep(random.uniform(0, 0.002))  # early or late in the wait
            signal.pthread_kill(main.ident or 0, signal.SIGINT)
            sent += 1
            done = wait
        time.sleep(0.0005)
    return sent


def test_an_interrupted_wait_is_a_keyboard_interrupt_and_the_loop_carries_on() -> None:
    # Ctrl-C during many blocking waits: each surfaces as KeyboardInterrupt (never as an error of
    # the wait's own locking), the interrupted coroutine is cancelled on the loop, and the loop
    # still answers afterwards.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    async def long_work() -> None:
        await asyncio.sleep(30)

    interrupted = 0
    waits = [0]
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sender = pool.submit(_interrupt_each_wait, threading.main_thread(), waits, stop)
        try:
            with BackgroundLoop() as bg:
                for wait in range(50):
                    waits[0] = wait
                    try:
                        bg.run(long_work(), 20.0)
                    except KeyboardInterrupt:
                        interrupted += 1
                stop.set()
                sent = sender.result(10)

                async def left_running() -> int:
                    # every interrupted run's task (one cancelled before it was created has none)
                    others = asyncio.all_tasks() - {asyncio.current_task()}
                    await asyncio.gather(*others, return_exceptions=True)
                    return sum(not task.cancelled() for task in others)

                assert bg.run(left_running(), 10.0) == 0
                assert bg.run(asyncio.sleep(0, result="alive"), 5.0) == "alive"
                with pytest.raises(TimeoutError):
                    bg.run(asyncio.sleep(1.0), 0.01)
        finally:
            stop.set()
            signal.signal(signal.SIGINT, previous)
    assert interrupted == sent == 50


def test_a_result_the_loop_produced_at_the_deadline_is_returned_not_dropped() -> None:
    # The loop is busy past the deadline (a slow conversion, a loaded machine) while the
    # coroutine finishes: what it took (a frame off a stream's queue) must reach the caller.
    taken: list[int] = []

    async def take() -> int:
        taken.append(len(taken))
        time.sleep(0.3)  # noqa: ASYNC251 (blocks the loop: the deadline passes meanwhile)
        return taken[-1]

    with BackgroundLoop() as bg:
        assert bg.run(take(), 0.05) == 0
        assert taken == [0]


def test_a_timeout_cancels_the_coroutine_and_its_own_timeout_error_passes() -> None:
    cancelled = threading.Event()

    async def never() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def own_timeout() -> None:
        raise TimeoutError("the coroutine's own")

    with BackgroundLoop() as bg:
        with pytest.raises(TimeoutError, match=r"no result within 0\.05 s$"):
            bg.run(never(), 0.05)
        assert cancelled.wait(10)
        with pytest.raises(TimeoutError, match="the coroutine's own"):
            bg.run(own_timeout(), 5.0)
