"""The blocking bridge, used from a plain script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
