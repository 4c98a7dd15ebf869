"""scripts/bench_scale.py: the receivers' options (host candidates or relay-only), the summary, and
the receiver's command line (no credential on it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

from tests.support import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench_scale")


def test_receivers_use_host_candidates_unless_turn_is_given(bench: ModuleType) -> None:
    # profile_receive.py calls it with two arguments: that must keep working.
    host = bench._options("http://127.0.0.1:9/api", "ks")
    assert host.ice.policy == "all" and host.ice.extra_servers == ()
    turn = {"url": "turn:127.0.0.1:3478?transport=udp", "username": "u", "credential": "p"}
    relay = bench._options("http://127.0.0.1:9/api", "ks", turn)
    assert relay.ice.policy == "relay"
    assert [s.url for s in relay.ice.extra_servers] == [turn["url"]]


def test_without_turn_no_coturn_is_started(bench: ModuleType) -> None:
    with bench.turn_server(False) as turn:
        assert turn is None


def _cell(n: int, *, min_fps: float) -> dict[str, object]:
    return {"n": n, "failed": 0, "min_fps": min_fps, "min_worst_second": 24, "rcvbuf_errors": 0}


def test_the_largest_clean_n_says_when_no_larger_n_was_tried(bench: ModuleType) -> None:
    clean, collapsed = 25.0, 15.9
    rows = [_cell(32, min_fps=clean), _cell(64, min_fps=clean)]
    assert bench.largest_clean(rows) == "64 (the largest N tried: the ceiling may be higher)"
    rows.append(_cell(80, min_fps=collapsed))
    assert bench.largest_clean(rows) == "64"
    assert bench.largest_clean([_cell(1, min_fps=collapsed)]) == "none"


def test_ratios_are_against_aiortc_at_the_same_n(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    def cell(mode: str, n: int, cpu: float | None) -> dict[str, object]:
        return {"mode": mode, "n": n, "cpu_per_session": cpu}

    cells = [
        cell("decode", 1, 3.0), cell("copy-record", 1, 1.0), cell("aiortc", 1, 8.0),
        cell("decode", 2, 3.0), cell("copy-record", 2, None), cell("aiortc", 2, 5.0),
        cell("decode", 4, 2.0),  # no aiortc cell at N = 4: no ratio
    ]  # fmt: skip
    assert bench.ratios(cells) == {"decode": {1: 0.375, 2: 0.6}, "copy-record": {1: 0.125}}
    bench.print_ratios(cells)
    out = capsys.readouterr().out
    assert "target <= 0.5: missed at N = [2]" in out
    assert "target <= 0.2: met at every N" in out
    # Cells without their runs (JSON of an older bench): the medians' ratio, marked as such.
    assert "N=1 0.375*  N=2 0.600*" in out
    assert "* no runs side by side in the JSON: the ratio of the cells' medians" in out

    # With the runs kept (median_cell keeps them in run order), runs i are paired: the median
    # of 2/4, 4/8, 3/12 is 0.5, where the medians' ratio would be 3/8.
    def runs(*cpu: float) -> list[dict[str, object]]:
        return [{**_cell(1, min_fps=25.0), "cpu_per_session": v} for v in cpu]

    decode, aiortc = bench.median_cell(runs(2.0, 4.0, 3.0)), bench.median_cell(runs(4.0, 8.0, 12.0))
    decode["mode"], aiortc["mode"] = "decode", "aiortc"
    assert decode["cpu_per_session"] == 3.0 and aiortc["cpu_per_session"] == 8.0
    assert bench.ratios([decode, aiortc]) == {"decode": {1: 0.5}}
    bench.print_ratios([decode, aiortc])
    out = capsys.readouterr().out
    assert "N=1 0.500\n" in out and "*" not in out


def _python(code: str) -> tuple[subprocess.Popen[str], IO[str], IO[str]]:
    """``python -c code``, and its stdin and stdout (text pipes)."""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    return child, child.stdin, child.stdout


def test_cpu_seconds_count_every_thread_to_the_nanosecond(bench: ModuleType) -> None:
    spin = (
        "import sys, threading, time\n"
        "def spin():\n"
        "    t = time.thread_time()\n"
        "    while time.thread_time() - t < 0.2: pass\n"
        "threads = [threading.Thread(target=spin) for _ in range(2)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "print('spun', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child, stdin, stdout = _python(spin)
    assert stdout.readline() == "spun\n"  # both threads have ended; it waits on stdin
    with open(f"/proc/{child.pid}/stat") as f:  # first: the child may still run a little
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    cpu = bench._cpu_seconds([child.pid])
    stdin.close()
    assert child.wait(timeout=60) == 0
    assert cpu >= 0.4  # the two ended threads' time is in
    # /proc's figure, whose utime and stime are each rounded down to a 10 ms tick
    assert ticks <= cpu < ticks + 0.021
    assert bench._cpu_seconds([child.pid]) == 0.0  # gone: nothing, no error


def test_the_receiver_gets_the_ks_on_stdin_not_its_command_line(
    bench: ModuleType, tmp_path: Path
) -> None:
    echo = tmp_path / "echo.py"
    echo.write_text(
        "import json, sys\nprint(json.dumps({'argv': sys.argv, 'stdin': sys.stdin.readline()}))\n"
    )
    gen = {"ks": "secret-ks-42", "turn": {"credential": "secret-turn-7"}}
    receiver = bench.spawn_receiver(str(echo), "decode", 2, 8.0, gen, "--procs", "2")
    seen = json.loads(receiver.stdout.read())  # as the bench reads it: the stdin is closed
    assert receiver.wait(timeout=60) == 0
    assert "secret" not in " ".join(seen["argv"])
    assert seen["argv"][1:5] == ["--receiver", "decode", "--n", "2"]
    assert json.loads(seen["stdin"]) == gen


def test_wakeups_count_each_time_a_thread_blocked_and_woke(bench: ModuleType) -> None:
    sleeper = (
        "import sys, threading, time\n"
        "go, done = threading.Event(), threading.Event()\n"
        "def nap():\n"
        "    go.wait()\n"
        "    for _ in range(40): time.sleep(0.005)\n"
        "    print('napped', flush=True)\n"
        "    done.wait()\n"
        "t = threading.Thread(target=nap); t.start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline(); go.set()\n"
        "sys.stdin.readline(); done.set(); t.join()\n"
    )
    child, stdin, stdout = _python(sleeper)
    assert stdout.readline() == "ready\n"
    before = bench._wakeups([child.pid])
    assert (child.pid, child.pid) in before  # the main thread, blocked on stdin
    stdin.write("go\n")
    stdin.flush()
    assert stdout.readline() == "napped\n"  # both threads blocked again, alive
    after = bench._wakeups([child.pid])
    assert set(after) == set(before) and len(after) == 2
    woken = bench._wakeups_since(before, after)
    # the 40 naps, and a few blocking waits (stdin, the events) around them
    assert 40 <= woken < 60
    stdin.write("end\n")
    stdin.flush()
    assert child.wait(timeout=60) == 0
    started = {**after, (child.pid, 1): 45}  # a thread started meanwhile counts from 0
    assert bench._wakeups_since(before, started) == woken + 45
    assert bench._wakeups([child.pid]) == {}  # gone: nothing, no error


def test_the_generator_verdict_names_the_cells_over_its_target(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = [
        {"mode": "decode", "n": 1, "gen_cpu_per_session": 2.14},
        {"mode": "aiortc", "n": 1, "gen_cpu_per_session": 1.9},
        {"mode": "decode", "n": 8, "gen_cpu_per_session": 0.55},
        {"mode": "decode", "n": 16, "gen_cpu_per_session": None},  # not measured: no verdict
    ]
    assert bench.generator_over_target(cells) == [("decode", 1)]
    bench.print_generator(cells)
    out = capsys.readouterr().out
    assert "0.55-2.14 %" in out and "target <= 2 %: missed in [('decode', 1)]" in out
    bench.print_generator(cells[1:])
    out = capsys.readouterr().out
    assert "0.55-1.90 %" in out and "met in every cell" in out
