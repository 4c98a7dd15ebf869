"""Time to first decoded video frame with headless Chromium (real libwebrtc) as the WHEP sender.

    python scripts/ttff_chromium.py [--runs 7] [--codec H264 VP8] [--client auto|aiortc|avatar_rtc]
        [--sender chromium|gstreamer] [--fresh-process] [--json]

One sender for all runs (the sender page keeps running, as a live avatar stream would); every
run is a new WHEP session. By default the sessions of one codec run one after the other in one
receiving process and the first ("cold": lazy imports, first TLS context, codec init) is
reported apart from the median; ``--fresh-process`` uses a new process per run instead.
Prints medians including the client's phase split (offer, gathering, WHEP answer, ICE, DTLS)
and first frame after connected. Needs root (private network namespace) and chromium.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.interop import harness  # noqa: E402


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(
    codec: str, runs: list[dict[str, Any]], cold: dict[str, Any] | None
) -> dict[str, Any]:
    ok = [r for r in runs if r["ttff_s"] is not None]
    phases: dict[str, float | None] = {}
    for key in sorted({k for r in ok for k in r["timings"]}):
        phases[key] = _median([r["timings"][key] for r in ok if key in r["timings"]])
    return {
        "codec": codec,
        "client": runs[0]["client"] if runs else "",
        "runs": len(runs),
        "failures": len(runs) - len(ok),
        "ttff_s": [round(r["ttff_s"], 4) for r in ok],
        "median_ttff_s": _median([r["ttff_s"] for r in ok]),
        "min_ttff_s": min((r["ttff_s"] for r in ok), default=None),
        "max_ttff_s": max((r["ttff_s"] for r in ok), default=None),
        "median_phases_s": phases,
        "median_first_frame_after_connect_s": _median(
            [r["first_frame_after_connect_s"] for r in ok if r["first_frame_after_connect_s"]]
        ),
        "cold_ttff_s": cold["ttff_s"] if cold else None,
        "errors": [r["error"] for r in runs if r["error"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--codec", nargs="+", choices=["H264", "VP8"], default=["H264", "VP8"])
    parser.add_argument("--client", choices=["auto", "aiortc", "avatar_rtc"], default="auto")
    parser.add_argument("--sender", choices=["chromium", "gstreamer"], default="chromium")
    parser.add_argument("--fresh-process", action="store_true", help="a process per run")
    parser.add_argument("--json", action="store_true", help="print one JSON document only")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    start = harness.chromium_sender if args.sender == "chromium" else harness.gstreamer_sender
    results = []
    with start() as sender:
        for codec in args.codec:
            if args.fresh_process:
                cold = None
                runs = harness.ttff_runs(
                    sender, codec, args.runs, client=args.client, fresh_process=True
                )
            else:
                cold, *runs = harness.ttff_runs(sender, codec, args.runs + 1, client=args.client)
            results.append(summarize(codec, runs, cold))
    if args.json:
        print(json.dumps({"sender": args.sender, "results": results}, indent=2))
        return
    for res in results:
        median = res["median_ttff_s"]
        print(
            f"{args.sender} -> {res['client']} {res['codec']}: median ttff "
            f"{'n/a' if median is None else f'{median * 1000:.0f} ms'} over {res['runs']} runs "
            f"(min {_ms(res['min_ttff_s'])}, max {_ms(res['max_ttff_s'])}, "
            f"failures {res['failures']})"
        )
        if res["median_phases_s"]:
            split = ", ".join(f"{k} {_ms(v)}" for k, v in res["median_phases_s"].items())
            print(f"  median phases: {split}")
        print(
            f"  first frame after connected (median): "
            f"{_ms(res['median_first_frame_after_connect_s'])}; cold run: {_ms(res['cold_ttff_s'])}"
        )
        for error in res["errors"]:
            print(f"  error: {error}")


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


if __name__ == "__main__":
    main()
