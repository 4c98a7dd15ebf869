#!/usr/bin/env python3
"""Admission with and without the pool's CPU measurement, when the jobs' costs are too low.

Sessions of one kind (default ``decode``) arrive one every ``--gap`` seconds at a
``SessionPool`` (one worker per core) whose ``costs`` say ``--cost`` cores a session (default
0.02: about half of what a decode session of the emulator's 512x512 stream costs on the
2-core reference machine, as a heavier stream, a slower machine or a caller's wrong figure
would make it). Two modes, taking turns run by run:

- ``measured``: the pool as it ships, booking what each worker uses when that is more than
  its jobs' costs (``avatar_rtc.fleet.process_cpu``);
- ``costs``: ``SessionPool(measure=False)``, the costs alone.

Fed by the emulator's fan-out load generator (``bench_scale.py``'s, in a process of its own).
Per mode, medians of ``--runs``: the most sessions running at once, the sessions' fps (lowest,
median), the lowest worst second, how many sessions got under 24 fps, and the wall time (the
measured mode queues what does not fit, so its last sessions start later).

    python scripts/bench_admission.py --netns                   # 64 sessions, about 3 minutes
    python scripts/bench_admission.py --netns --runs 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from avatar_rtc.fleet.admission import DEFAULT_LIMIT  # noqa: E402  (after the path above)

MODES = ("measured", "costs")
CLEAN_FPS = 24.0
WARMUP = 2.0  # seconds of each session not counted in its fps


async def run_mode(mode: str, gen: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One run: ``args.sessions`` jobs arriving every ``args.gap`` s; the figures."""
    from bench_scale import _options

    from avatar_rtc.fleet import FleetJob, SessionPool

    options = _options(gen["api_url"], gen["ks"])
    pool = SessionPool(limit=args.limit, costs={args.kind: args.cost}, measure=mode == "measured")
    most = 0
    started = time.monotonic()
    async with pool:
        futures = []
        for index in range(args.sessions):
            job = FleetJob(
                index,
                args.kind,
                options,
                duration=args.duration,
                out_dir=args.out,
                sender_epoch=gen["epoch"],
                warmup=WARMUP,
            )
            futures.append(pool.submit(job))
            most = max(most, pool.load().running)
            await asyncio.sleep(args.gap)
        while not all(f.done() for f in futures):
            most = max(most, pool.load().running)
            await asyncio.sleep(0.5)
    results = [f.result() for f in futures]
    return summarise(mode, [r.to_dict() for r in results], most, time.monotonic() - started)


def summarise(
    mode: str, results: list[dict[str, Any]], most_running: int, wall: float
) -> dict[str, Any]:
    """One run's figures from its sessions' results (``JobResult.to_dict()``)."""
    fps = [r["fps"] or 0.0 for r in results]
    worst = [r["worst_second_fps"] or 0.0 for r in results]
    return {
        "mode": mode,
        "sessions": len(results),
        "failed": sum(not r["ok"] for r in results),
        "most_running": most_running,
        "min_fps": min(fps),
        "median_fps": statistics.median(fps),
        "min_worst_second": min(worst),
        "under_24_fps": sum(f < CLEAN_FPS for f in fps),
        "wall_s": wall,
    }


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over a mode's runs."""
    keys = [k for k in runs[0] if k != "mode"]
    return {"mode": runs[0]["mode"], **{k: statistics.median(r[k] for r in runs) for k in keys}}


def print_table(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"medians of {runs} run(s)")
    print(
        f"{'mode':>10} {'sessions':>8} {'failed':>6} {'most':>5} {'minfps':>7} {'medfps':>7} "
        f"{'worst1s':>7} {'<24fps':>6} {'wall s':>6}"
    )
    for r in rows:
        print(
            f"{r['mode']:>10} {r['sessions']:>8.0f} {r['failed']:>6.0f} {r['most_running']:>5.0f} "
            f"{r['min_fps']:>7.1f} {r['median_fps']:>7.1f} {r['min_worst_second']:>7.0f} "
            f"{r['under_24_fps']:>6.0f} {r['wall_s']:>6.0f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kind", default="decode", choices=("decode", "copy-record"))
    ap.add_argument("--cost", type=float, default=0.02, help="cores a session, as the pool is told")
    ap.add_argument(
        "--limit", type=float, default=DEFAULT_LIMIT, help="the pool's limit (default its own)"
    )
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between two arrivals")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds each session runs")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    ap.add_argument("--netns", action="store_true", help="run in a fresh network namespace")
    ap.add_argument("--json", action="store_true", help="print a JSON line too")
    args = ap.parse_args()
    # A worst whole second needs two counted seconds (the first one starts mid-second).
    if args.runs < 1 or args.sessions < 1 or args.gap < 0 or not args.duration >= WARMUP + 2:
        ap.error(f"--runs and --sessions must be >= 1, --gap >= 0, --duration >= {WARMUP + 2:g}")
    if not 0 < args.cost <= 1 or not 0 < args.limit <= 1:
        ap.error("--cost and --limit must be within (0, 1]")
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes: of {', '.join(MODES)}")
    from bench_scale import load_generator, rerun_in_netns

    if args.netns:
        return rerun_in_netns(__file__)

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as out:
        args.out = out
        for i in range(args.runs):
            for mode in modes:  # taking turns: both see the same stretch of the machine's load
                with load_generator() as gen:
                    run = asyncio.run(run_mode(mode, gen, args))
                runs[mode].append(run)
                print(f"run {i + 1}: {json.dumps(run)}", file=sys.stderr, flush=True)
    rows = [median_runs(runs[m]) for m in modes]
    print_table(rows, args.runs)
    if args.json:
        print(
            json.dumps({"cpus": os.cpu_count(), "kind": args.kind, "cost": args.cost, "rows": rows})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
