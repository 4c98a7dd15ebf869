"""No leaks: 100 sessions opened and closed in one process, against the embedded emulator.

The sessions mix what a long-running program meets: connect, receive frames, record to a
file, close; a start cancelled mid-connect (after the service created the session); a
service failing (create 500, init-client 503, end 503 then fine on the retry). Afterwards
open file descriptors, OS threads (native ones too: /proc/self/task; the event loop's
default executor aside, which grows on demand to a fixed maximum) and asyncio tasks are
back at their baseline, RSS within +20 MB of it, the emulator ended every session it created
and holds no media (so no WHEP resource) any more.

Baseline after a warm-up: the first sessions load codecs, fill allocator pools and start
lazily created worker threads, which stay for the life of the process by design (a leak is
what grows with the number of sessions, not what the first one sets up). RSS is read after
``malloc_trim(0)``, both times: glibc keeps freed memory in per-thread arenas and returns it
when it likes, which swings RSS by tens of MB from one moment to the next (measured: 170 to
225 MB untrimmed while 135 to 150 MB trimmed, over the same 100 sessions); trimmed, RSS
follows the memory in use. Over 300 sessions it climbs for about 20 sessions, then moves
up and down within 132 to 155 MB with no trend; one reading can be anywhere in that band, so
each side of the comparison is the median of the readings after the last five sessions.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from avatar_rtc.emulator import DEFAULT_VISUAL_ID, Emulator
from avatar_rtc.errors import ServerError
from avatar_rtc.session import AvatarSession

from .support import emulator_options, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SESSIONS = 100
WARM_UP = 25  # measured: RSS climbs for about 20 sessions, then stays within a 25 MB band
TAIL = 5  # RSS: the median after each of the last TAIL sessions (see the module docstring)
RSS_SLACK_MB = 20.0  # the bound
FAULTS = (("create", 500), ("init-client", 503), ("end", 503))
_LIBC = ctypes.CDLL("libc.so.6")


@dataclass(frozen=True)
class Resources:
    fds: int
    threads: int  # OS threads (FFmpeg's too) but the event loop's default executor's
    pool_threads: int  # the default executor's: made on demand, up to its fixed maximum
    tasks: int
    rss_mb: float

    def __str__(self) -> str:
        return (f"fds {self.fds}, threads {self.threads} (+{self.pool_threads} in the "
                f"loop's executor), tasks {self.tasks}, RSS {self.rss_mb:.1f} MB")  # fmt: skip


def _resources() -> Resources:
    """The figures now, RSS after giving glibc's free lists back to the system (see the
    module docstring)."""
    gc.collect()
    _LIBC.malloc_trim(0)
    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    pool = sum(t.name.startswith("asyncio_") for t in threading.enumerate())
    return Resources(
        fds=len(os.listdir("/proc/self/fd")),
        threads=len(os.listdir("/proc/self/task")) - pool,  # every OS thread: FFmpeg's too
        pool_threads=pool,
        tasks=len(asyncio.all_tasks()),
        rss_mb=rss_kb / 1024,
    )


def _session(emu: Emulator) -> AvatarSession:
    return AvatarSession(emulator_options(emu, avatar_id=DEFAULT_VISUAL_ID))


async def _receive(emu: Emulator, path: Path | None) -> None:
    """Connect, take three frames from a stream (and record meanwhile), close."""
    async with _session(emu) as session:
        recorder = session.record(path) if path is not None else None
        await session.wait_first_frame(10)
        async with session.video() as stream:
            frames = 0
            async for _ in stream:
                frames += 1
                if frames == 3:
                    break
    if recorder is not None:
        assert recorder.stats().closed and recorder.path.stat().st_size > 0


async def _cancel_mid_connect(emu: Emulator, delay: float) -> None:
    """Cancel start() once the service created the session (a cancel before that could not
    know the session to end), ``delay`` seconds later: in init-client, WHEP or ICE."""
    created = emu.counters.sessions_created
    session = _session(emu)
    start = asyncio.create_task(session.start())
    await wait_until(lambda: emu.counters.sessions_created > created or start.done(), 10.0)
    await asyncio.sleep(delay)
    start.cancel()
    try:
        await start
    except asyncio.CancelledError:
        pass
    else:  # connected before the cancel arrived: a normal close
        await session.close()


async def _service_fails(emu: Emulator, endpoint: str, status: int) -> None:
    emu.faults.fail_next(endpoint, status)
    try:
        async with _session(emu) as session:
            await session.wait_first_frame(10)
    except ServerError:
        assert endpoint != "end", "end is retried: its 503 must not reach the caller"
    else:
        assert endpoint == "end", f"{endpoint} {status} did not fail the start"


async def _one(emu: Emulator, index: int, tmp: Path) -> None:
    kind = index % 10
    if kind == 7:
        await _cancel_mid_connect(emu, delay=0.02 * (index % 7))
    elif kind == 9:
        endpoint, status = FAULTS[(index // 10) % len(FAULTS)]
        await _service_fails(emu, endpoint, status)
    else:
        await _receive(emu, tmp / f"session-{index}.mp4" if kind % 2 == 0 else None)


async def _one_measured(emu: Emulator, index: int, tmp: Path) -> float:
    """RSS in MB after session ``index``."""
    await _one(emu, index, tmp)
    return _resources().rss_mb


async def _settled(baseline: Resources, within: float) -> Resources:
    """The resources once back at the baseline (closing sockets and threads may take a few
    loop turns), or as they are after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        now = _resources()
        pairs = ((now.fds, baseline.fds), (now.threads, baseline.threads),
                 (now.tasks, baseline.tasks))  # fmt: skip
        if all(a <= b for a, b in pairs) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.05)


async def test_100_sessions_leave_nothing_behind(tmp_path: Path) -> None:
    started = time.monotonic()
    async with Emulator() as emu:
        warm_up_rss = [await _one_measured(emu, index, tmp_path) for index in range(WARM_UP)]
        baseline = _resources()
        tasks_before = asyncio.all_tasks()
        looped = time.monotonic()
        rss = [await _one_measured(emu, index, tmp_path) for index in range(SESSIONS)]
        loop_seconds = time.monotonic() - looped
        after = await _settled(baseline, within=10.0)
        rss_before, rss_after = (
            statistics.median(warm_up_rss[-TAIL:]),
            statistics.median(rss[-TAIL:]),
        )

        print(f"\n{SESSIONS} sessions in {loop_seconds:.1f} s (warm-up {WARM_UP})")
        print(f"baseline: {baseline}\nafter:    {after}")
        print(f"RSS medians of the last {TAIL}: {rss_before:.1f} -> {rss_after:.1f} MB "
              f"(range over the {SESSIONS}: {min(rss):.1f} to {max(rss):.1f} MB)")  # fmt: skip
        print(f"emulator: {emu.counters}")
        assert after.fds == baseline.fds, f"file descriptors leaked: {os.listdir('/proc/self/fd')}"
        assert after.threads == baseline.threads, f"threads leaked: {threading.enumerate()}"
        # asyncio's default executor starts a worker when a job finds none idle, up to
        # ThreadPoolExecutor's default maximum, and keeps it: bounded, not per session.
        assert after.pool_threads <= min(32, (os.cpu_count() or 1) + 4)
        assert after.tasks == baseline.tasks, f"tasks leaked: {asyncio.all_tasks() - tasks_before}"
        assert rss_after - rss_before <= RSS_SLACK_MB, "memory grew"
        counters = emu.counters
        assert counters.sessions_created == counters.sessions_ended
        assert counters.sessions_expired == 0
        assert all(s.media is None for s in emu.sessions), "a session's media is still open"
    print(f"whole test: {time.monotonic() - started:.1f} s")
