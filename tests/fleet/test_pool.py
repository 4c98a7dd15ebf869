"""The local engine end to end: 4 jobs in 2 worker processes against one embedded emulator.

Two ``qa`` jobs (the worker records and writes the QA report) and two ``decode`` jobs whose
frames reach this process through the workers' shared-memory rings; costs chosen so each
worker has room for one job at a time, so admission must queue half of them.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator.media import markers_for
from avatar_rtc.fleet import (
    EngineStateError,
    FleetJob,
    JobResult,
    SessionPool,
    SharedFrame,
    Utterance,
)
from avatar_rtc.fleet.frames import FrameRing
from avatar_rtc.fleet.pool import _died
from avatar_rtc.options import SessionOptions
from tests.support import emulator_options, wait_until

pytestmark = pytest.mark.slow

SIZE = (64, 64)


@pytest.fixture
async def options() -> AsyncIterator[SessionOptions]:
    async with Emulator() as emulator:
        yield emulator_options(emulator, avatar_id="fleet-test")


async def test_four_jobs_in_two_workers_admitted_by_cost(
    options: SessionOptions, tmp_path: Path
) -> None:
    speech = (Utterance("text", "Checking the pool"),)
    jobs = [
        FleetJob(
            i,
            "qa" if i < 2 else "decode",
            options,
            duration=2.0,
            speech=speech,
            out_dir=str(tmp_path),
            share_frames=i >= 2,
        )
        for i in range(4)
    ]
    frames: list[tuple[int, np.ndarray]] = []

    def on_frame(frame: SharedFrame) -> None:
        with frame:
            frames.append((frame.job, frame.array[1:5, 1:5].mean(axis=(0, 1))))

    running_seen: list[int] = []
    # the costs alone (measure=False): one job a worker whatever the workers are measured to use
    pool = SessionPool(2, costs={"qa": 0.5, "decode": 0.5}, frame_size=SIZE, measure=False)
    async with pool:
        pool.on_frame(on_frame)
        futures = [pool.submit(job) for job in jobs]
        assert (pool.load().running, pool.load().queued) == (2, 2)
        while not all(f.done() for f in futures):
            running_seen.append(pool.load().running)
            await asyncio.sleep(0.05)
        results = [f.result() for f in futures]
        assert pool.load().measured == (None, None)

    assert max(running_seen) == 2  # never more than one job per worker
    assert all(r.ok for r in results), [r.error for r in results]
    workers = {str(r.worker) for r in results}
    assert len(workers) == 2
    assert not any(w.endswith(f":{os.getpid()}") for w in workers)  # not in this process

    check_qa_files(results[:2], tmp_path)

    for result in results[2:]:  # decode: every shared frame reached this process
        received = [colour for job, colour in frames if job == result.index]
        assert result.frames_shared == len(received) >= 25
        # the top-left marker, scaled down to the ring's 64x64 (8x8 pixels)
        marker = np.array(markers_for(512, 512)[0].rgb)
        assert np.abs(np.median(received, axis=0) - marker).max() < 40


def check_qa_files(results: list[JobResult], folder: Path) -> None:
    """qa: the worker wrote the file and the report."""
    for result in results:
        assert result.file == str(folder / f"session-{result.index:03d}.mp4")
        assert Path(result.file).stat().st_size > 10_000
        report = json.loads(Path(str(result.report_file)).read_text())
        assert report["verdict"] == result.verdict
        assert report["lipsync"]["offset_ms"] == result.lipsync_offset_ms
        assert result.ttff_s is not None and result.say_to_speech_s is not None


async def test_stop_finishes_running_files_and_runs_no_queued_job(
    options: SessionOptions, tmp_path: Path
) -> None:
    jobs = [
        FleetJob(i, "copy-record", options, duration=60.0, out_dir=str(tmp_path)) for i in range(3)
    ]
    async with SessionPool(2, costs={"copy-record": 0.6}) as pool:
        futures = [pool.submit(job) for job in jobs]
        assert (pool.load().running, pool.load().queued) == (2, 1)
        # connected and recording (a fixed sleep was too short on a loaded machine), and the
        # pool has measured its workers (every second: what admission books when it is more)
        files = [tmp_path / f"{job.name}.mp4" for job in jobs[:2]]
        await wait_until(
            lambda: (
                all(f.exists() and f.stat().st_size > 64_000 for f in files)
                and all(m is not None for m in pool.load().measured)
            ),
            within=120,
        )
        measured = pool.load().measured
        assert len(measured) == 2 and all(m is not None and m > 0 for m in measured), measured
        pool.stop()
        with pytest.raises(EngineStateError, match="not accepting"):
            pool.submit(jobs[0])
        results = await asyncio.wait_for(asyncio.gather(*futures), 30)
    assert results[2].error == "not run: the pool was stopped" and not results[2].ok
    assert not results[2].interrupted  # it never ran
    for result in results[:2]:
        assert result.ok, result.error
        assert result.interrupted  # said, not only seen in the short duration
        assert 0.5 < result.media_seconds < 10  # ended early, not after 60 s
    assert_playable(results[:2])


def assert_playable(results: list[JobResult]) -> None:
    for result in results:
        with av.open(str(result.file)) as container:
            assert sum(1 for _ in container.decode(video=0)) > 10


async def test_jobs_after_a_worker_died_run_on_the_others(options: SessionOptions) -> None:
    async with SessionPool(2, costs={"decode": 0.3}) as pool:
        first = [pool.submit(FleetJob(i, "decode", options, duration=6.0)) for i in range(2)]
        await asyncio.sleep(2.0)  # both running, one in each worker
        (victim,) = [w.process for w in pool._workers[:1]]
        os.kill(victim.pid or 0, signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*first), 30)
        gone = [r for r in results if not r.ok]
        assert len(gone) == 1 and gone[0].error == "its worker process ended (exit code -9)"
        later = [pool.submit(FleetJob(i, "decode", options, duration=1.0)) for i in range(2, 5)]
        after = await asyncio.wait_for(asyncio.gather(*later), 60)
    assert [r.ok for r in after] == [True] * 3, [r.error for r in after]


async def test_a_job_that_raises_what_the_runner_does_not_catch_fails_instead_of_hanging(
    options: SessionOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the qa extra a qa job raised ModuleNotFoundError in its worker: the result
    was never sent and the pool (and `fleet --job qa`, Ctrl-C too) waited for ever."""
    fake = tmp_path / "no_scipy" / "scipy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'scipy'\")\n")
    monkeypatch.syspath_prepend(str(fake.parent))  # spawned workers get our sys.path
    job = FleetJob(0, "qa", options, duration=1.0, out_dir=str(tmp_path))
    async with SessionPool(1, measure=False) as pool:
        result = await asyncio.wait_for(pool.submit(job), 60)
    assert not result.ok and result.exit_code == 1
    assert result.error is not None and "scipy" in result.error, result.error


async def test_a_dead_workers_result_names_the_file_it_was_writing(
    options: SessionOptions, tmp_path: Path
) -> None:
    job = FleetJob(0, "copy-record", options, duration=60.0, out_dir=str(tmp_path), container="mkv")
    assert job.output_path == tmp_path / "session-000.mkv"
    async with SessionPool(1) as pool:
        future = pool.submit(job)
        path = tmp_path / "session-000.mkv"
        await wait_until(lambda: path.exists() and path.stat().st_size > 100_000, within=120)
        os.kill(pool._workers[0].process.pid or 0, signal.SIGKILL)
        result = await asyncio.wait_for(future, 30)
    assert not result.ok and result.file == str(path)  # was: None, the file unnamed
    assert result.error == (
        "its worker process ended (exit code -9); the file it was writing is unfinished"
    )
    with av.open(result.file) as container:  # Matroska: what was written plays
        assert sum(1 for _ in container.decode(video=0)) > 10


async def test_starting_twice_is_refused() -> None:
    pool = SessionPool(1)
    async with pool:
        with pytest.raises(EngineStateError, match="started already"):
            await pool.start()
        assert len(pool._workers) == 1


async def test_a_pool_that_fails_to_start_ends_the_workers_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create = FrameRing.create
    made: list[object] = []

    def second_fails(slots: int, width: int, height: int) -> FrameRing:
        if made:
            raise OSError("no shared memory left")
        made.append(ring := create(slots, width, height))
        return ring

    monkeypatch.setattr(FrameRing, "create", second_fails)  # (the class the pool uses)
    before = {p.pid for p in multiprocessing.active_children()}
    pool = SessionPool(2, frame_size=SIZE)
    with pytest.raises(OSError, match="no shared memory"):
        await pool.start()
    assert made  # the first worker was started, with its ring
    left = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert left == [], left  # and ended again


async def test_a_frame_callback_removed_twice_is_no_error() -> None:
    pool = SessionPool(1)
    remove = pool.on_frame(lambda frame: frame.release())
    remove()
    remove()


def test_a_dead_workers_result_does_not_name_an_earlier_runs_file(
    options: SessionOptions, tmp_path: Path
) -> None:
    job = FleetJob(0, "copy-record", options, out_dir=str(tmp_path), container="mkv")
    path = tmp_path / "session-000.mkv"
    path.write_bytes(b"yesterday's recording")
    os.utime(path, (time.time() - 86400, time.time() - 86400))
    sent_at = time.time()
    assert _died(job, -9, sent_at).file is None  # was: named, "unfinished"
    path.write_bytes(b"today's")  # written since the job was sent
    assert _died(job, -9, sent_at).file == str(path)
