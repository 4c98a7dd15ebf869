"""scripts/profile_receive.py: py-spy raw stacks -> µs per packet of the event-loop thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import SCRIPTS, load_script

SCRIPT = SCRIPTS / "profile_receive.py"


@pytest.fixture(scope="module")
def profile() -> ModuleType:
    return load_script("profile_receive")


LOOP = "thread (7): MainThread;main (x.py);_run_once (asyncio/base_events.py)"
RAW = f"""\
{LOOP};EpollSelector.select (selectors.py) 40
{LOOP};f (a.py);g (a.py) 30
{LOOP};f (a.py) 10
thread (9): avatar-rtc-video-decoder;Thread.run (threading.py);decode (d.py) 500
"""


def test_only_the_loop_thread_counts_and_select_is_set_apart(
    profile: ModuleType, tmp_path: Path
) -> None:
    raw = tmp_path / "p.raw"
    raw.write_text(RAW)
    stacks = profile.parse_raw(raw)
    assert len(stacks) == 3  # the decoder thread's stack is not the loop's
    # 100 samples/s over 10 s of 20 packets/s: a sample is 10 ms / 200 packets = 50 µs/packet
    costs = profile.top_costs(stacks, 50.0, 10)
    assert costs["total_us"] == 80 * 50.0
    assert costs["select_us"] == 40 * 50.0
    inclusive = dict(costs["inclusive"])
    assert inclusive["f (a.py)"] == 40 * 50.0 and inclusive["g (a.py)"] == 30 * 50.0
    own = dict(costs["self"])
    assert own["f (a.py)"] == 10 * 50.0 and own["g (a.py)"] == 30 * 50.0
    assert len(profile.parse_raw(raw, None)) == 4  # every thread, on request


def test_without_py_spy_it_says_what_to_install(tmp_path: Path) -> None:
    # An empty PATH (no py-spy): a one-line message and exit 2, not a traceback.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--modes", "decode"],
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "profile_receive: py-spy is not installed (pip install py-spy)"
