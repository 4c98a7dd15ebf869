"""Every example runs with no arguments (against an emulator it starts) and ends by itself.

They run concurrently (they mostly wait on real-time media), each with a 60 s limit. An example
whose third-party package (OpenCV, PyTorch) is missing is skipped locally and fails in CI,
where ``scripts/setup.sh --dev`` installs it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import require

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LIMIT = 60.0
NAMES = ("numpy_model", "opencv_frames", "save_png_frames", "sync_script", "torch_tensors")
# Examples that need a package the library does not: (import name, what to tell).
NEEDS = {
    "opencv_frames": ("cv2", "OpenCV (cv2, the qa extra) for examples/opencv_frames.py"),
    "torch_tensors": ("torch", "PyTorch (torch) for examples/torch_tensors.py"),
}


def has_package(name: str) -> bool:
    need = NEEDS.get(name)
    return need is None or importlib.util.find_spec(need[0]) is not None


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[subprocess.Popen[str], Path]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("AVATAR_API_URL", "AVATAR_KS", "AVATAR_ID", "AVATAR_VOICE_ID"):
        env.pop(name, None)  # the examples must not need (or pick up) real credentials
    procs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    for name in filter(has_package, NAMES):
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
    if name in NEEDS:
        require(has_package(name), NEEDS[name][1])
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
    # _target.py is the examples' shared set-up (the service or an emulator), not one of them
    assert {p.stem for p in EXAMPLES.glob("[!_]*.py")} == set(NAMES)
    assert {p.stem for p in EXAMPLES.glob("_*.py")} == {"_target"}


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


def test_opencv_frames(runs: dict[str, tuple[subprocess.Popen[str], Path]]) -> None:
    import cv2

    out, cwd = finish(runs, "opencv_frames")
    # The emulator's top-left marker is red: in OpenCV's B-G-R order, red comes last.
    b, g, r = (int(v) for v in re.findall(r"top-left pixel B=(\d+) G=(\d+) R=(\d+)", out)[0])
    assert r > 200 and b < 60 and g < 60, out
    motion = dict(re.findall(r"mouth motion while (\w+): ([\d.]+)", out))
    assert float(motion["speaking"]) > 2 * float(motion["quiet"]) + 1, out
    picture = cv2.imread(str(cwd / "avatar-opencv.png"))
    assert picture is not None and picture.shape == (512, 512, 3)
    x, y = int(512 * 0.35), int(512 * 0.58)  # the mouth box the example drew, in green
    assert picture[y, x + 20].tolist() == [0, 255, 0]


def test_torch_tensors(runs: dict[str, tuple[subprocess.Popen[str], Path]]) -> None:
    out, _ = finish(runs, "torch_tensors")
    assert "video (8, 3, 224, 224) torch.float32 -> mouth" in out
    assert "audio (1, 8000) torch.float32 -> rms" in out
    mouth = re.search(r"batches of 8: mouth ([\d.]+)\.\.([\d.]+)", out)
    rms = re.search(r"audio chunks of 0.5 s: rms [\d.]+\.\.([\d.]+)", out)
    assert mouth is not None and rms is not None, out
    (low, high), loudest = (float(v) for v in mouth.groups()), float(rms[1])
    assert high > 0.3 and low < 0.1, out  # it spoke, and it was quiet
    assert loudest > 0.02, out  # speech arrived as audio tensors
