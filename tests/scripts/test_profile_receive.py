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
thread (7): MainThread 27
thread (9): avatar-rtc-video-decoder;Thread.run (threading.py);decode (d.py) 500
"""


def test_only_the_loop_thread_counts_and_select_is_set_apart(
    profile: ModuleType, tmp_path: Path
) -> None:
    raw = tmp_path / "p.raw"
    raw.write_text(RAW)
    stacks = profile.parse_raw(raw)
    assert len(stacks) == 4  # the decoder thread's stack is not the loop's
    # 100 samples/s over 10 s of 20 packets/s: a sample is 10 ms / 200 packets = 50 µs/packet
    costs = profile.top_costs(stacks, 50.0, 10)
    assert costs["total_us"] == 80 * 50.0  # (the 27 samples of no Python frame: not busy)
    assert costs["select_us"] == 40 * 50.0
    inclusive = dict(costs["inclusive"])
    assert inclusive["f (a.py)"] == 40 * 50.0 and inclusive["g (a.py)"] == 30 * 50.0
    own = dict(costs["self"])
    assert own["f (a.py)"] == 10 * 50.0 and own["g (a.py)"] == 30 * 50.0
    assert "thread (7): MainThread" not in own  # (it was in 'top self': a thread is no function)
    assert len(profile.parse_raw(raw, None)) == 5  # every thread, on request


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


def test_the_cpu_figures_come_from_the_window_nothing_sampled(profile: ModuleType) -> None:
    # py-spy stops every thread at each sample, which costs the process CPU of its own: the
    # CPU per session is the first window's; the sampled window's is given apart.
    clean = {
        "cpu": 0.72,
        "wall": 10.0,
        "packets": 12_000,
        "packet_rate": 1200.0,
        "threads": {"MainThread": 0.6, "recorder:session.mp": 0.12, "idle": 0.0},
        "batches": {"wakeups": 5000, "datagrams": 12_100},
    }
    profiled = {
        "cpu": 1.04,
        "wall": 10.0,
        "packets": 12_100,
        "packet_rate": 1210.0,
        "threads": {"MainThread": 0.9, "recorder:session.mp": 0.14},
        "batches": {"wakeups": 5100, "datagrams": 12_200},
        "errors": [],
    }
    costs = {"total_us": 60.0, "select_us": 15.0, "inclusive": [], "self": []}
    figures = profile.summarise("copy-record", 8, clean, profiled, costs)
    assert figures["cpu_per_session_pct"] == pytest.approx(0.9)  # 0.72 s / 10 s / 8
    assert figures["sampled_cpu_per_session_pct"] == pytest.approx(1.3)
    assert figures["cpu_us_per_packet"] == pytest.approx(60.0)  # 0.72 s / 12,000 packets
    assert figures["thread_cpu_per_session_pct"] == {
        "MainThread": 0.75,
        "recorder:session.mp": 0.15,
    }
    assert figures["batches"] == clean["batches"]
    assert figures["loop_us_per_packet"] == 45.0 and figures["select_us_per_packet"] == 15.0
