"""A recording process killed with SIGKILL leaves a readable file (fragmented MP4, MKV)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from tests.record.filecheck import ffprobe_streams, spans

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigkill_leaves_a_playable_file(tmp_path: Path) -> None:
    paths = [tmp_path / "killed.mp4", tmp_path / "killed.mkv", tmp_path / "silent.mp4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # All at once: one 5 s wait for them. The audio of silent.mp4 never comes (an MP4 muxer
    # waiting for every track before its first fragment wrote nothing at all).
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.record.crash_writer", str(path), "8"]
            + (["no-audio"] if path.stem == "silent" else []),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
        time.sleep(5.5)
        for proc in procs:
            assert proc.poll() is None, "writer exited before the kill"
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    for path in paths:
        kinds = sorted(str(s["codec_name"]) for s in ffprobe_streams(path))
        assert kinds == ["h264", "opus"], path
        span = spans(path)
        if path.stem == "silent":
            # FFmpeg's interleaving holds the video up to a second for the audio it waits for.
            assert span["video"].duration >= 2.5, (path, span)
        else:
            assert span["video"].duration >= 4.0, (path, span)
            assert span["audio"].duration >= 4.0, (path, span)
        with av.open(str(path)) as container:
            decoded = sum(1 for _ in container.decode(video=0))
        assert decoded >= span["video"].duration * 25 - 1, (path, decoded)  # all of them


def test_forgotten_stop_is_finalised_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "forgotten.mkv"
    script = (
        "import sys\n"
        "from avatar_rtc.record import Recorder\n"
        "from tests.record.synth import Scenario, encoded_frames\n"
        "r = Recorder(sys.argv[1]).start()\n"
        "for f in encoded_frames(Scenario(duration=2.0)):\n"
        "    r.write(f)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, env=env, check=True, timeout=60
    )
    span = spans(path)
    assert abs(span["video"].duration - 2.0) < 0.05 and abs(span["audio"].duration - 2.0) < 0.05
    with av.open(str(path)) as container:  # the trailer (duration, cues) was written
        assert container.duration is not None and abs(container.duration / 1e6 - 2.0) < 0.05
