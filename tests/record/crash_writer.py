"""Child process of the crash test: records real-time paced input until it is SIGKILLed.

Usage: python -m tests.record.crash_writer PATH SECONDS [no-audio]
Prints READY once the input is generated, then writes frames at their real pace (``no-audio``:
the video only, as from a sender whose audio never comes).
"""

from __future__ import annotations

import sys
import time

from avatar_rtc.record import Recorder
from tests.record.synth import Scenario, encoded_frames


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    frames = encoded_frames(Scenario(duration=seconds, mark=None))
    if sys.argv[3:] == ["no-audio"]:
        frames = [frame for frame in frames if frame.kind == "video"]
    recorder = Recorder(path).start()
    print("READY", flush=True)
    t0 = time.monotonic()
    base = frames[0].arrival_time
    for frame in frames:
        delay = (frame.arrival_time - base) - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)
        recorder.write(frame)
    time.sleep(3600)  # wait for the kill; never reaches stop()


if __name__ == "__main__":
    main()
