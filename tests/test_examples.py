"""Every example runs with no arguments (against an emulator it starts) and ends by itself.

The three run concurrently (they mostly wait on real-time media), each with a 60 s limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LIMIT = 60.0
NAMES = ("numpy_model", "save_png_frames", "sync_script")


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[subprocess.Popen[str], Path]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("AVATAR_API_URL", "AVATAR_KS", "AVATAR_ID", "AVATAR_VOICE_ID"):
        env.pop(name, None)  # the examples must not need (or pick up) real credentials
    procs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    for name in NAMES:
        cwd = tmp_path_factory.mktemp(name)
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py")],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs[name] = (proc, cwd)
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finish(runs: dict[str, tuple[subprocess.Popen[str], Path]], name: str) -> tuple[str, Path]:
    proc, cwd = runs[name]
    try:
        out, err = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{name} did not end within {LIMIT} s\n{out}\n{err}")
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{out}\n{err}"
    return out, cwd


def test_all_examples_are_covered() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(NAMES)


def test_numpy_model(runs: dict[str, tuple[subprocess.Popen[str], Path]]) -> None:
    out, _ = finish(runs, "numpy_model")
    assert "first frame 512x512" in out
    scores = [
        float(line.split("mouth=")[1].split()[0]) for line in out.splitlines() if "mouth=" in line
    ]
    assert len(scores) >= 20  # ~5 per second for 8 s
    assert max(scores) > 0.3 and min(scores) < 0.1  # it spoke, and it was quiet
    assert "speaking started" in out and "video:" in out


def test_save_png_frames(runs: dict[str, tuple[subprocess.Popen[str], Path]]) -> None:
    out, cwd = finish(runs, "save_png_frames")
    files = sorted((cwd / "avatar-frames").glob("*.png"))
    assert len(files) >= 4, out
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    assert f"{len(files)} PNG files" in out


def test_sync_script(runs: dict[str, tuple[subprocess.Popen[str], Path]]) -> None:
    out, _ = finish(runs, "sync_script")
    assert "video frame: (160, 160, 3) uint8" in out
    assert "audio: 16000 samples at 16 kHz" in out
    assert "idle again; utterances: 1" in out or "idle again; utterances:" in out
    assert out.rstrip().endswith("session ended")
