#!/usr/bin/env python3
"""The emulator's face: CPU per rendered frame, open eyes shared vs drawn for every frame.

Every emulator session renders its own picture (``FaceRenderer``), 25 frames a second, on its
encoder thread. Open eyes depend on the gaze's phase alone, so the renderer keeps each phase's
patch for the process (``face.OPEN_EYES_CACHED``); this measures what that saves, in the same
run: ``drawn`` forgets the patches before every frame (each frame draws its eyes, as before the
cache), ``shared`` keeps them, once a process has drawn every phase (the first session's first
two turns of the gaze, 5 s: ``fill``, measured apart). A pass is ``--seconds`` of an idle face
(mouth closed, eyes moving, blinks included). CPU is ``time.thread_time``; passes alternate;
medians of ``--runs``.

    python scripts/bench_face.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar_rtc.emulator.media import FaceRenderer, face  # noqa: E402

FPS = 25


def pass_us(frames: int, *, shared: bool) -> tuple[float, float]:
    """(µs of CPU per frame over ``frames`` idle 512x512 frames, ms of CPU the fill took)."""
    renderer = FaceRenderer(512, 512)
    face.clear_open_eyes()
    out = None
    fill = 0.0
    if shared:
        started = time.thread_time()
        for k in range(round(2 * face.GAZE_PERIOD * FPS)):  # every gaze phase at this rate
            out = renderer.render(0.0, out=out, t=k / FPS)
        fill = 1e3 * (time.thread_time() - started)
    started = time.thread_time()
    for k in range(frames):
        if not shared:
            face.clear_open_eyes()
        out = renderer.render(0.0, out=out, t=k / FPS)
    return 1e6 * (time.thread_time() - started) / frames, fill


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0, help="of video per pass")
    ap.add_argument("--json", action="store_true", help="print a JSON line too")
    args = ap.parse_args()
    if args.runs < 1 or args.seconds <= 0:
        ap.error("--runs must be >= 1 and --seconds > 0")
    frames = max(1, round(args.seconds * FPS))
    drawn, shared, fills = [], [], []
    for _ in range(args.runs):
        drawn.append(pass_us(frames, shared=False)[0])
        us, fill = pass_us(frames, shared=True)
        shared.append(us)
        fills.append(fill)
    figures = {
        "frames": frames,
        "drawn_us_per_frame": statistics.median(drawn),
        "shared_us_per_frame": statistics.median(shared),
        "ratio": statistics.median(s / d for s, d in zip(shared, drawn, strict=True)),
        "fill_ms": statistics.median(fills),
    }
    print(
        f"{frames} idle 512x512 frames, medians of {args.runs}: eyes drawn every frame "
        f"{figures['drawn_us_per_frame']:.0f} µs a frame, shared "
        f"{figures['shared_us_per_frame']:.0f} µs ({figures['ratio']:.2f} of it; drawing every "
        f"phase once: {figures['fill_ms']:.0f} ms a process); at {FPS} fps, "
        f"{figures['drawn_us_per_frame'] * FPS / 1e4:.2f} -> "
        f"{figures['shared_us_per_frame'] * FPS / 1e4:.2f} % of a core per session"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
