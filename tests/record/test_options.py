"""RecordOptions: validation, and how the file's piece size paces the writer thread."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from avatar_rtc import ConfigurationError
from avatar_rtc.record import Recorder, RecordOptions
from avatar_rtc.record.options import container_for_path, container_options, piece_seconds
from tests.record.synth import Scenario, encoded_frames
from tests.support import wait_until


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, 61.0])
def test_a_piece_that_is_not_a_sane_duration_is_refused(value: float) -> None:
    with pytest.raises(ConfigurationError, match="fragment_seconds"):
        RecordOptions(fragment_seconds=value)
    with pytest.raises(ConfigurationError, match="cluster_seconds"):
        RecordOptions(cluster_seconds=value)


def test_the_piece_is_the_fragment_for_mp4_and_the_cluster_for_matroska() -> None:
    options = RecordOptions(fragment_seconds=0.3, cluster_seconds=0.7)
    mp4, mkv, webm = (container_for_path(f"out{ext}") for ext in (".mp4", ".mkv", ".webm"))
    assert piece_seconds(mp4, options) == 0.3
    assert piece_seconds(mkv, options) == piece_seconds(webm, options) == 0.7
    assert container_options(mp4, options)["frag_duration"] == "300000"
    assert container_options(mkv, options)["cluster_time_limit"] == "700"


def _queue_two_seconds(recorder: Recorder) -> None:
    for frame in encoded_frames(Scenario(duration=2.0)):
        assert recorder.write(frame)


async def test_the_writer_takes_queued_frames_once_per_piece_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "short.mkv"
    recorder = Recorder(path, RecordOptions(cluster_seconds=0.2)).start()
    try:
        _queue_two_seconds(recorder)  # far below a quarter of a bound: no wake-up by a put
        await wait_until(path.exists, 30)  # no stats() call here: it would wake the writer
    finally:
        stats = recorder.stop()
    assert stats.video.frames == 50 and stats.dropped == 0


async def test_the_writer_does_not_look_more_often_than_once_per_piece(tmp_path: Path) -> None:
    path = tmp_path / "long.mkv"
    recorder = Recorder(path, RecordOptions(cluster_seconds=60.0)).start()
    try:
        _queue_two_seconds(recorder)
        # A writer looking every 0.1 s (or woken by each put) would have begun in a second.
        await asyncio.sleep(1.0)
        assert not path.exists()
        recorder.stats()  # a reader of progress wakes it: the file starts now
        await wait_until(path.exists, 30)
    finally:
        stats = recorder.stop()
    assert stats.video.frames == 50 and stats.dropped == 0
