"""Start-up time of ``avatar-rtc --version`` / ``--help``: median of N runs (wall clock).

Measured the way a user runs it: the installed ``avatar-rtc`` entry point next to this
Python (no pyenv shim in front), and ``python -m avatar_rtc.cli``; a bare ``python -c pass``
is the floor (the interpreter's own start). Reported, not asserted: a busy machine slows
every figure; tests/cli/test_main.py checks the cause instead (nothing heavy is imported).

    python scripts/bench_cli_startup.py [--runs 5] [--root CHECKOUT] [--json out.json]

``--root``: the checkout to time (default this one), e.g. an older commit's
``git archive`` to compare against.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, list[str]]:
    python = sys.executable
    entry = Path(python).with_name("avatar-rtc")
    commands = {"python -c pass (floor)": [python, "-c", "pass"]}
    for flag in ("--version", "--help"):
        if entry.exists():
            commands[f"avatar-rtc {flag}"] = [str(entry), flag]
        commands[f"python -m avatar_rtc.cli {flag}"] = [python, "-m", "avatar_rtc.cli", flag]
    return commands


def _time(argv: list[str], runs: int, root: Path) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # that checkout, whatever is installed
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env, cwd=root)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to time (default: this)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to OUT")
    args = parser.parse_args()
    results = {}
    for name, argv in _commands().items():
        _time(argv, 1, args.root)  # warm the OS file cache (a first run reads the disk)
        seconds = _time(argv, args.runs, args.root)
        results[name] = {"median_ms": round(statistics.median(seconds) * 1000, 1),
                         "runs_ms": [round(s * 1000, 1) for s in seconds]}  # fmt: skip
        print(f"{name:40s} median {results[name]['median_ms']:7.1f} ms  {results[name]['runs_ms']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
