"""The blocking bridge, used from a plain script in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from avatar_rtc.media.sync_iter import BackgroundLoop

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


# An interrupt that lands in a finalizer (a WeakSet callback of asyncio's) is printed and
# dropped by Python itself, as a real Ctrl-C there would be; one that lands after the
# ``asyncio.sleep()`` argument was made and before it was scheduled leaves it never awaited.
# Neither is this test's subject.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:coroutine 'sleep' was never awaited:RuntimeWarning")
def test_an_interrupted_wait_is_a_keyboard_interrupt_and_the_loop_carries_on() -> None:
    # Ctrl-C (here SIGALRM raising KeyboardInterrupt) at random points of many waits: each one
    # surfaces as KeyboardInterrupt, never as an error of the wait's own locking, and the
    # background loop still answers afterwards.
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    interrupted = 0
    try:
        with BackgroundLoop() as bg:
            for _ in range(300):
                try:
                    try:
                        signal.setitimer(signal.ITIMER_REAL, random.uniform(5e-5, 3e-3))
                        bg.run(asyncio.sleep(0.002), None)
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except KeyboardInterrupt:
                    interrupted += 1
            assert bg.run(asyncio.sleep(0, result="alive"), 5.0) == "alive"
            with pytest.raises(TimeoutError):
                bg.run(asyncio.sleep(1.0), 0.01)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 0
